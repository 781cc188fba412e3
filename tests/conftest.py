"""Shared fixtures: an isolated vidgen home, offline Hub, a tiny real WanPipeline, the CLI.

huggingface_hub reads HF_HUB_OFFLINE when it is imported, so it is set here at import
time (before any test imports it), as well as per test.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
# Tiny models gain nothing from threads, and on a small shared CPU torch's default
# thread pool oversubscribes the cores (the suite ran 4x slower). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Hypothesis keeps its caches in `.hypothesis/` of the folder pytest starts in (the checkout)
# unless told otherwise; one folder per user under the system's temporary folder instead.
# tests/test_properties.py checks that the checkout holds none.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), f"vidgen-tests-hypothesis-{os.getuid()}"))

import functools  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from tests.tiny_pipelines import build_tiny_pipeline  # noqa: E402


def gallery_file(relative: Path) -> bool:
    """DIR/index.html or one of its posters (vidgen.batch.gallery): what every batch now
    writes beside its videos, left out where a test lists a batch folder's videos (a
    temporary file in .posters/ still counts)."""
    parts = Path(relative).parts
    return parts == ("index.html",) or (len(parts) == 2 and parts[0] == ".posters" and not parts[1].startswith("."))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a launcher's rendezvous)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def standalone_env() -> dict[str, str]:
    """os.environ for a `vidgen` subprocess that runs alone: no `vidgen serve` of the
    user's, and none of a launcher's variables (the test starts its own launcher)."""
    env = {**os.environ, "VIDGEN_NO_SERVER": "1"}
    for name in [name for name in env if name.startswith("ACCELERATE_") or name in ("WORLD_SIZE", "RANK", "LOCAL_RANK")]:
        env.pop(name)
    return env


# Small enough to run in well under a second on a CPU; valid for Wan (4k+1, /16).
TINY_ARGS = ["--steps", "2", "--size", "32x32", "--frames", "9"]
# The fake pipeline's folder holds its own pipeline code (tests/fake_pipeline.py), which diffusers
# runs only when told to: every run of it passes --trust-remote-code after `--model FOLDER`.
FAKE_ARGS = ["--trust-remote-code", *TINY_ARGS]


# The tiers (pyproject's markers; `make check` leaves out `slow` and `model`): a test that uses a
# fixture building tiny real pipelines is a `model` test whether or not it says so, and a
# browser or Ray test is `slow`; a test that builds a pipeline or starts a process by itself is
# marked in its file.
MODEL_FIXTURES = {"tiny_wan_dir", "generate_tiny", "tiny_pipeline_dir", "framepack_repositories", "component_repositories"}
SLOW_MARKS = ("browser", "ray")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(item.fixturenames) and item.get_closest_marker("model") is None:
            item.add_marker(pytest.mark.model)
        if any(item.get_closest_marker(name) for name in SLOW_MARKS) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
    # Longest first: `make test` hands whole modules to its workers (--dist loadscope) in this order,
    # so the long modules start first and the short ones fill in at the end, instead of one worker
    # finishing a long module alone at the end. A stable sort: the rest keep the files' order.
    items.sort(key=lambda item: LONGEST_MODULES.index(item.path.name) if item.path.name in LONGEST_MODULES else len(LONGEST_MODULES))


# The modules that take longest, longest first (seconds of tests summed, 2-core VM, `--durations=0`).
LONGEST_MODULES = [
    "test_embedded_train.py",
    "test_batch_processes.py",
    "test_presets_tiny.py",
    "test_embedded_model.py",
    "test_server.py",
    "test_parallel.py",
    "test_batch_ray.py",
    "test_reliability.py",
    "test_pipeline_class.py",
    "test_batch.py",
]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """VIDGEN_HOME in a temp dir, offline Hub, and a fresh working folder per test."""
    home = tmp_path / "vidgen-home"
    monkeypatch.setenv("VIDGEN_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    # No `vidgen serve` of the user's: the socket would be looked for under the temp home.
    for name in ("VIDGEN_PRESET", "VIDGEN_DEBUG", "XDG_RUNTIME_DIR", "VIDGEN_NO_SERVER", "VIDGEN_KEEP_ALIVE"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny random WanPipeline in diffusers layout, shared by the whole session."""
    return build_tiny_pipeline("WanPipeline", tmp_path_factory.mktemp("models") / "tiny-wan")


@pytest.fixture(scope="session")
def fake_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake pipeline's model folder (tests/fake_pipeline.py): for the tests where the
    pipeline is not the point (output, formats, exit codes, batch bookkeeping)."""
    from tests.fake_pipeline import build_fake_model

    return build_fake_model(tmp_path_factory.mktemp("models") / "fake")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory):
    """`get(class_name, variant=None)`: a tiny random pipeline folder, built once per session
    whichever test module asks first (read-only: copy it before changing anything)."""
    built: dict[tuple[str, str | None], Path] = {}
    root = tmp_path_factory.mktemp("tiny-pipelines")

    def get(class_name: str, variant: str | None = None) -> Path:
        if (class_name, variant) not in built:
            folder = root / (class_name + (f"-{variant}" if variant else ""))
            built[class_name, variant] = build_tiny_pipeline(class_name, folder, variant=variant)
        return built[class_name, variant]

    return get


@pytest.fixture(scope="session")
def framepack_repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FramePack's three tiny repositories, laid out like the real ones: hub id -> folder."""
    from tests.tiny_pipelines import build_framepack_repositories

    return build_framepack_repositories(tmp_path_factory.mktemp("framepack"))


@pytest.fixture(scope="session")
def component_repositories(framepack_repositories, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every repository the shipped presets' [components] name, tiny and laid out like the real
    ones (FramePack's, the LTX latent upsamplers'): hub id -> folder."""
    from tests.tiny_pipelines import build_ltx2_stage_files, build_ltx_upsampler_repository

    root = tmp_path_factory.mktemp("upsamplers")
    return {
        **framepack_repositories,
        "Lightricks/ltxv-spatial-upscaler-0.9.7": build_ltx_upsampler_repository(root / "ltxv-upscaler"),
        "Lightricks/LTX-2": build_ltx2_stage_files(root / "LTX-2"),
    }  # its upsampler and stage-2 LoRA; the pipeline is --model


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes
    exception: BaseException | None


@pytest.fixture
def batch(run_cli, fake_model_dir):
    """`batch(FILE, ARGS..., out="out", input=None)`: `vidgen batch FILE -O out` in-process on the fake
    pipeline (tiny sizes), for the tests where the folder's bookkeeping is the point, not the model."""

    def invoke(prompts_file, *args: str, out="out", input: str | None = None):
        return run_cli("batch", prompts_file, "-O", out, "--model", fake_model_dir, *FAKE_ARGS, *args, input=input)

    return invoke


@pytest.fixture
def run_cli():
    """Run `vidgen ARGS` in-process; stdout and stderr are kept apart."""
    from vidgen.cli.app import app

    def invoke(*args: str, input: str | bytes | None = None) -> CliResult:
        result = CliRunner().invoke(app, [str(arg) for arg in args], input=input, prog_name="vidgen")
        return CliResult(result.exit_code, result.stdout, result.stderr, result.stdout_bytes, result.exception)

    return invoke


@pytest.fixture
def generate_tiny(run_cli, tiny_wan_dir):
    """`vidgen PROMPT --model TINY --steps 2 --size 32x32 --frames 9 ARGS...`."""

    def invoke(prompt: str, *args: str, input: str | bytes | None = None) -> CliResult:
        return run_cli(prompt, "--model", tiny_wan_dir, *TINY_ARGS, *args, input=input)

    return invoke


@pytest.fixture
def generate_fake(run_cli, fake_model_dir):
    """`vidgen PROMPT --model FAKE --trust-remote-code --steps 2 --size 32x32 --frames 9 ARGS...`:
    generate_tiny's command on the fake pipeline (frames in milliseconds, no weights)."""

    def invoke(prompt: str, *args: str, input: str | bytes | None = None) -> CliResult:
        return run_cli(prompt, "--model", fake_model_dir, *FAKE_ARGS, *args, input=input)

    return invoke


@pytest.fixture
def pipeline_calls(monkeypatch):
    """`watch(cls)`: a list that gets one entry per call of a `cls` pipeline, with the
    pipeline as vidgen handed it over: `pipe`, the `scheduler` object at the call, whether
    its VAE tiles (`vae_tiling`), and the call's keyword arguments. What the recipe says
    echoes the settings; this is what the model really ran with."""

    def watch(cls) -> list[SimpleNamespace]:
        calls: list[SimpleNamespace] = []
        original = cls.__call__

        @functools.wraps(original)  # vidgen reads the call's parameters from its signature
        def spy(self, *args, **kwargs):
            vae = getattr(self, "vae", None)
            calls.append(
                SimpleNamespace(
                    pipe=self, scheduler=getattr(self, "scheduler", None), vae_tiling=getattr(vae, "use_tiling", None), kwargs=kwargs
                )
            )
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", spy)
        return calls

    return watch


# `vidgen serve` on a thread of the test process, or as a real process (tests/server_fixtures.py),
# for every test module that names one of them.
from tests.server_fixtures import runtime_dir, serve_process, serve_thread, served, thread_server  # noqa: E402, F401
