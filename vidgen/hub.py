"""Where model files come from: a local folder or the Hugging Face Hub (cache first).

Small files are read before any weights (model_index.json, a component's config.json), so
a missing model, a gated one or a wrong class is one line before gigabytes are read.
`vidgen pull` downloads through `download_model`. Every hub failure is one line naming
what to do (pull it, set HF_TOKEN, go online).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from vidgen.errors import GenerationError, ModelNotAvailableError, UsageError
from vidgen.presets import ModelLocation

# Only safetensors are loaded; these other weight formats are never downloaded.
NON_SAFETENSORS_WEIGHTS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf"]



def is_offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE)


def revision_argument(location: ModelLocation, revision: str | None) -> dict[str, str]:
    """`revision=` for huggingface_hub and diffusers where a hub model has one; a local
    folder has no branches, so nothing."""
    return {"revision": revision} if revision and not location.is_local else {}


def read_model_index(location: ModelLocation, pull_hint: str, revision: str | None = None) -> dict[str, Any]:
    """model_index.json of the model: from its folder, or the hub (cache first).

    Reading this small file first finds a missing model or a wrong pipeline class
    before gigabytes of weights are read.
    """
    if location.is_local:
        folder = Path(location.location)
        if not folder.is_dir():
            if location.kind == "builtin":
                raise ModelNotAvailableError(
                    f"the built-in model has no weights at {folder}; this install is incomplete "
                    "(reinstall vidgen, or choose another --preset or --model)"
                )
            raise UsageError(f"model folder not found: {folder}")
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            raise UsageError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    else:
        try:
            index_file = Path(hf_hub_download(location.location, "model_index.json", **revision_argument(location, revision)))
        except GatedRepoError as error:
            raise ModelNotAvailableError(
                f"model {location.location} is gated: accept its licence on huggingface.co and set HF_TOKEN"
            ) from error
        except RepositoryNotFoundError as error:
            raise UsageError(
                f"model {location.location} not found on the Hugging Face Hub (private? set HF_TOKEN)"
            ) from error
        except LocalEntryNotFoundError as error:
            if is_offline():
                raise ModelNotAvailableError(
                    f"model {location.location} is not downloaded and HF_HUB_OFFLINE is set; "
                    f"download it with network access: {pull_hint}"
                ) from error
            raise ModelNotAvailableError(
                f"cannot reach the Hugging Face Hub to download {location.location}; {pull_hint} once online"
            ) from error
        except RevisionNotFoundError as error:
            raise UsageError(f"model {location.location} has no revision {revision!r} on the Hugging Face Hub") from error
        except EntryNotFoundError as error:  # after LocalEntryNotFoundError, its subclass
            where = f" at revision {revision!r}" if revision else ""
            raise UsageError(f"model {location.location} is not in diffusers layout{where} (no model_index.json)") from error
    try:
        return json.loads(index_file.read_text())
    except (OSError, ValueError) as error:
        raise GenerationError(f"cannot read {index_file}: {error}") from error


def component_config(location: ModelLocation, component: str, revision: str | None = None) -> dict[str, Any] | None:
    """A component's config.json (a few hundred bytes), or None when it cannot be read:
    the check that wanted it is then skipped and loading reports the real problem."""
    try:
        if location.is_local:
            path = Path(location.location) / component / "config.json"
        else:
            path = Path(hf_hub_download(location.location, f"{component}/config.json", **revision_argument(location, revision)))
        return json.loads(path.read_text())
    except Exception:  # absent, offline, unreadable: not this check's business
        return None


def download_model(location: ModelLocation, revision: str | None = None) -> str:
    """`vidgen pull`: fetch a hub model's safetensors and configs (at `revision`, a
    branch, tag or commit, where the preset names one) into the HF cache; return the
    folder it is in (a local model is already there)."""
    if location.is_local:
        return location.location
    model = location.location
    if is_offline():
        raise ModelNotAvailableError(f"cannot download {model}: HF_HUB_OFFLINE is set")
    try:
        return snapshot_download(model, ignore_patterns=NON_SAFETENSORS_WEIGHTS, **revision_argument(location, revision))
    except GatedRepoError as error:
        raise ModelNotAvailableError(f"model {model} is gated: accept its licence on huggingface.co and set HF_TOKEN") from error
    except RevisionNotFoundError as error:
        raise UsageError(f"model {model} has no revision {revision!r} on the Hugging Face Hub") from error
    except RepositoryNotFoundError as error:
        raise UsageError(f"model {model} not found on the Hugging Face Hub (private? set HF_TOKEN)") from error
    except OSError as error:
        raise ModelNotAvailableError(f"cannot download {model}: {error}") from error
