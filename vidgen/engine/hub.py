"""Where model files come from: a local folder or the Hugging Face Hub (cache first).

huggingface_hub's functions are called through the module (`huggingface_hub.hf_hub_download`),
so that tests can stand in for the Hub there.

Small files are read before any weights (model_index.json, a component's config.json), so
a missing model, a gated one or a wrong class is one line before gigabytes are read.
`vidgen pull` downloads through `download_model`. Every hub failure is one line naming
what to do (pull it, set HF_TOKEN, go online).
"""

from __future__ import annotations

import json
import re
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import logging as hub_logging

from vidgen.errors import GenerationError, ModelNotAvailableError, UsageError, first_line
from vidgen.settings.locations import ModelLocation
from vidgen.settings.presets import Preset

FORMATS = {".gguf": "gguf", ".safetensors": "safetensors"}
_HUB_FILE = re.compile(r"^([\w.-]+/[\w.-]+)/((?:[\w.-]+/)*[\w.-]+)$")  # org/name/sub/dir/file
HUB_TIMEOUT = 3.0  # seconds the Hub gets to answer before it counts as unreachable
# Only safetensors are loaded; these other weight formats are never downloaded.
NON_SAFETENSORS_WEIGHTS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf"]


# ---- the Hub, fast and quiet when it cannot be reached ----


def hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether the Hub answers within `timeout` seconds (False at once with HF_HUB_OFFLINE).

    One HEAD request to the endpoint through huggingface_hub's own HTTP client (its
    proxies and certificates), with no retries: any HTTP answer means reachable. It runs
    in a thread so that a name lookup that hangs counts against the timeout too.
    Call it before a download that is not in the cache: huggingface_hub 2.x retries a
    failed connection 5 times (1+2+4+8+8 s) and logs `Retrying in 1s [Retry 1/5]` each time.
    """
    if constants.HF_HUB_OFFLINE:
        return False
    answers: list[bool] = []

    def probe() -> None:
        try:
            huggingface_hub.get_session().head(constants.ENDPOINT, timeout=timeout)
            answers.append(True)
        except Exception:  # any transport failure (httpx's classes differ between versions)
            answers.append(False)

    thread = threading.Thread(target=probe, name="vidgen-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answers and answers[0])


# diffusers 0.42.1's ConfigMixin.load_config passes huggingface_hub `local_dir_use_symlinks`, which
# huggingface_hub deprecated and ignores: a two-line UserWarning for every component loaded from a
# hub id ([components]). Only that warning, by its message and category, from huggingface_hub.
_SYMLINKS_DEPRECATION = r"The `local_dir_use_symlinks` argument is deprecated and ignored"


@contextmanager
def quiet_hub() -> Iterator[None]:
    """huggingface_hub logs only errors meanwhile (its retry warnings would otherwise come
    before vidgen's own one line), and its deprecation of an argument diffusers still passes
    (above) is not shown; every other warning is."""
    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SYMLINKS_DEPRECATION, category=UserWarning, module=r"huggingface_hub\.")
            yield
    finally:
        hub_logging.set_verbosity(verbosity)


@contextmanager
def refusals(what: str, revision: str | None = None) -> Iterator[None]:
    """The Hub's answers that no retry mends, as one line each: `what` ("model ORG/NAME", or
    a repository) is gated, absent, or has no such revision. GatedRepoError is a kind of
    RepositoryNotFoundError, so it comes first. The callers handle what is their own (a
    missing file, no network)."""
    try:
        yield
    except GatedRepoError as error:
        raise ModelNotAvailableError(f"{what} is gated: accept its licence on huggingface.co and set HF_TOKEN") from error
    except RepositoryNotFoundError as error:
        raise UsageError(f"{what} not found on the Hugging Face Hub (private? set HF_TOKEN)") from error
    except RevisionNotFoundError as error:
        raise UsageError(f"{what} has no revision {revision!r} on the Hugging Face Hub") from error


def fetch_hub_file(
    repo_id: str, filename: str, *, revision: str | None = None, timeout: float = HUB_TIMEOUT, download: bool = True
) -> Path:
    """One file of a Hub repository: the cached copy if there is one (no network), else
    downloaded when the Hub answers (and `download`), else one line within `timeout` seconds."""
    spec = f"{repo_id}/{filename}"
    hint = f"vidgen pull {spec}"
    try:
        with quiet_hub():
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError:
        if not download:
            raise ModelNotAvailableError(f"{spec} is not downloaded; {hint}") from None
    if constants.HF_HUB_OFFLINE:
        raise ModelNotAvailableError(f"{spec} is not downloaded and HF_HUB_OFFLINE is set; download it with network access: {hint}")
    if not hub_reachable(timeout):
        raise ModelNotAvailableError(f"cannot reach the Hugging Face Hub to download {spec} (offline?); {hint} once online")
    try:
        with quiet_hub(), refusals(repo_id, revision):
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
    except LocalEntryNotFoundError as error:  # the connection failed after the probe
        raise ModelNotAvailableError(f"cannot reach the Hugging Face Hub to download {spec}; {hint} once online") from error
    except EntryNotFoundError as error:  # after LocalEntryNotFoundError, its subclass
        raise UsageError(f"{repo_id} on the Hugging Face Hub has no file {filename}") from error
    except OSError as error:
        raise ModelNotAvailableError(f"cannot download {spec}: {first_line(error)}") from error


_reachability: tuple[float, bool] | None = None  # (when asked, the answer): a minute's memory


def local_only() -> bool:
    """Whether to read the Hub's cache only: HF_HUB_OFFLINE, or a Hub that does not answer
    (asked at most once a minute). huggingface_hub itself would retry an unreachable Hub for
    24 seconds, printing each retry, before vidgen could say one line."""
    global _reachability
    if is_offline():
        return True
    now = time.monotonic()
    if _reachability is None or now - _reachability[0] > 60:
        _reachability = (now, hub_reachable())
    return not _reachability[1]


def resolve_checkpoint(spec: str | Path, *, timeout: float = HUB_TIMEOUT, download: bool = True) -> Path:
    """A local .safetensors/.gguf file, or REPO/FILENAME on the Hub (a file in a subfolder
    too: org/name/sub/dir/file.gguf), fetched cache first (only from the cache when not
    `download`). UsageError for a bad name or format, ModelNotAvailableError when it cannot
    be downloaded; one line each."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"{text}: a single-file checkpoint must be a .safetensors or .gguf file")
    if path.is_file():
        return path
    if path.exists():
        raise UsageError(f"{text} is not a file")
    hub = _HUB_FILE.match(text)
    looks_local = path.is_absolute() or text.startswith((".", "~")) or Path(text.split("/")[0]).is_dir()
    if hub is None or looks_local:
        raise UsageError(f"checkpoint not found: {text} (a .safetensors or .gguf file, or REPO/FILENAME on the Hugging Face Hub)")
    return fetch_hub_file(hub.group(1), hub.group(2), timeout=timeout, download=download)


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
            with quiet_hub(), refusals(f"model {location.location}", revision):
                index_file = Path(
                    huggingface_hub.hf_hub_download(
                        location.location, "model_index.json", local_files_only=local_only(), **revision_argument(location, revision)
                    )
                )
        except LocalEntryNotFoundError as error:
            if is_offline():
                raise ModelNotAvailableError(
                    f"model {location.location} is not downloaded and HF_HUB_OFFLINE is set; download it with network access: {pull_hint}"
                ) from error
            raise ModelNotAvailableError(
                f"cannot reach the Hugging Face Hub to download {location.location}; {pull_hint} once online"
            ) from error
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
            with quiet_hub():
                path = Path(
                    huggingface_hub.hf_hub_download(
                        location.location,
                        f"{component}/config.json",
                        local_files_only=local_only(),
                        **revision_argument(location, revision),
                    )
                )
        return json.loads(path.read_text())
    except Exception:  # absent, offline, unreadable: not this check's business
        return None


def config_folder(location: ModelLocation, component: str, revision: str | None = None) -> Path:
    """A folder holding `component/config.json` of the model: its own folder, or the Hub
    cache's snapshot (the config fetched, a few hundred bytes; no weights)."""
    if location.is_local:
        return Path(location.location)
    try:
        with quiet_hub():
            path = huggingface_hub.hf_hub_download(
                location.location, f"{component}/config.json", local_files_only=local_only(), **revision_argument(location, revision)
            )
    except LocalEntryNotFoundError as error:
        raise ModelNotAvailableError(
            f"the config of {location.location}'s {component} is not downloaded and the Hugging Face Hub "
            f"is out of reach; vidgen pull {location.location} once online"
        ) from error
    return Path(path).parent.parent


def cached_folder(location: ModelLocation, revision: str | None = None) -> Path | None:
    """The Hub cache's folder of a model (what has been downloaded of it), or None: no network."""
    try:
        with quiet_hub():
            return Path(
                huggingface_hub.snapshot_download(location.location, local_files_only=True, **revision_argument(location, revision))
            )
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def download_model(location: ModelLocation, revision: str | None = None, subfolders: list[str] | None = None) -> str:
    """`vidgen pull`: fetch a hub model's safetensors and configs (at `revision`, a
    branch, tag or commit, where the preset names one; only `subfolders` where given)
    into the HF cache; return the folder it is in (a local model is already there)."""
    if location.is_local:
        return location.location
    model = location.location
    if is_offline():
        raise ModelNotAvailableError(f"cannot download {model}: HF_HUB_OFFLINE is set")
    if local_only():
        raise ModelNotAvailableError(f"cannot reach the Hugging Face Hub to download {model} (offline?)")
    only = {"allow_patterns": [f"{folder}/*" for folder in subfolders]} if subfolders else {}
    try:
        with quiet_hub(), refusals(f"model {model}", revision):
            return huggingface_hub.snapshot_download(
                model, ignore_patterns=NON_SAFETENSORS_WEIGHTS, **only, **revision_argument(location, revision)
            )
    except OSError as error:
        raise ModelNotAvailableError(f"cannot download {model}: {error}") from error


def preset_repositories(preset: Preset) -> list[tuple[ModelLocation, str | None, list[str] | None]]:
    """Every repository a preset names, once each: (location, revision, the subfolders it uses
    or None for all): its model, then its [components] (FramePack: three repositories)."""
    wanted: dict[tuple[str, str | None], tuple[ModelLocation, list[str] | None]] = {}
    for location, revision, subfolder in [(preset.model_location(), preset.revision, None)] + [
        (spec.location, spec.revision, spec.subfolder) for spec in preset.components.values()
    ]:
        key = (location.location, revision)
        known = wanted.get(key)
        folders = None if subfolder is None or (known and known[1] is None) else [*(known[1] if known else []), subfolder]
        wanted[key] = (location, folders)
    return [(location, revision, folders) for (_, revision), (location, folders) in wanted.items()]


def download_preset(preset: Preset) -> list[str]:
    """`vidgen pull PRESET`: every repository it names; offline, one line naming them all."""
    repositories = preset_repositories(preset)
    remote = [location.location for location, _, _ in repositories if not location.is_local]
    if remote and (is_offline() or local_only()):
        why = "HF_HUB_OFFLINE is set" if is_offline() else "cannot reach the Hugging Face Hub (offline?)"
        raise ModelNotAvailableError(f"cannot download {', '.join(remote)}: {why}")
    return [download_model(location, revision, folders) for location, revision, folders in repositories]
