"""Break the behaviour a test claims and check that the test then fails (issue 25's habit).

    .venv/bin/python tests/test_mutants.py              # every mutation below; exit 1 if one survives
    .venv/bin/python tests/test_mutants.py NAME ...     # only these
    .venv/bin/python tests/test_mutants.py --list       # names, targets and tests
    .venv/bin/python tests/test_mutants.py --jobs 2     # two mutations at a time
    .venv/bin/python tests/test_mutants.py NAME --tests tests/test_x.py::test_y   # does this test catch NAME?
    .venv/bin/python tests/test_mutants.py --check      # only: do the targets and tests still exist
    .venv/bin/python tests/test_mutants.py --baseline   # first: do the tests pass unbroken

Each mutation names a target, `module:attribute.path`, a way to break it (`breaks` gets the
original and returns what replaces it: a no-op, a constant, a wrong answer), and the tests
that claim the behaviour: with the target broken, every one of them must fail. Each
mutation runs in its own pytest process (the tests named only; a child forked from the runner,
which has imported torch, diffusers and transformers once but never vidgen), with this file
loaded as a plugin: the target is replaced right after its module is imported, before any other module
can bind the name, in pytest's process and in every Python process it starts (through a
sitecustomize.py on PYTHONPATH: `vidgen serve`, `python -m vidgen`; not one started with
a PYTHONPATH of its own). No file is edited.

A mutation is reported `caught` when every item of its tests failed, `SURVIVED` when one
passed (that test cannot see the break it claims to see), `MISSING` when its target or one
of its tests no longer exists (renamed or moved: update the list), `ERROR` when pytest
could not run them. Anything but `caught` exits 1.

Every mutation takes 1 to 45 s (its tests); all of them take about 3 minutes two at a time on
a 2-core VM, too long for the suite. So run this script by hand, or
in CI as a job of its own (`make mutants`), after changing a test or what it tests. The
suite runs only the cheap part, the tests at the end of this file: every target and test
of the list still exists (`--check`), and the runner catches one mutation and reports a
survivor.

When you add a test, add the mutation it must catch here, on a public name (`--check` refuses
a private one: a module may move its own). Refactoring vidgen moves
targets: the list below is the one place to update.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest


@dataclass(frozen=True)
class Mutation:
    name: str
    claim: str  # what the tests say they check, which this mutation breaks
    target: str | None  # "module:attribute.path"; None when `setup` does the breaking
    breaks: Callable[[Any], Any] | None  # the original -> what replaces it
    tests: tuple[str, ...]  # node ids (a test without [params] means every one of its items)
    setup: Callable[[], None] | None = None  # run in pytest_configure, after conftest.py
    leaves: tuple[str, ...] = field(default=())  # paths (from the repository root) the broken run may create


def noop(original):
    return lambda *args, **kwargs: None


# ---- the mutations: target, how it breaks, and the tests that must then fail ----

MUTATIONS = [
    Mutation(
        "hypothesis-writes-in-the-checkout",
        "Hypothesis keeps no files in the checkout (conftest.py points it elsewhere)",
        None,
        None,
        ("tests/test_properties.py::test_hypothesis_keeps_no_files_in_the_checkout",),
        setup=lambda: os.environ.pop("HYPOTHESIS_STORAGE_DIRECTORY", None),
        leaves=(".hypothesis",),
    ),
    Mutation(
        "failed-lines-show-a-traceback",
        "a batch of random prompts prints no traceback, whatever its exit code",
        "vidgen.batch.executor:Executor.failed",
        lambda original: _traceback_on_failure(original),
        (
            "tests/test_properties.py::test_random_json_lines_as_a_prompts_file",
            "tests/test_properties.py::test_random_csv_as_a_prompts_file",
        ),
    ),
    Mutation(
        "every-prompts-file-refused",
        "a prompts file is refused as a whole only when it gives cause",
        "vidgen.settings.prompts:read_prompt_lines",
        lambda original: _refuse_every_file,
        (
            "tests/test_properties.py::test_random_bytes_as_a_prompts_file",
            "tests/test_properties.py::test_random_csv_as_a_prompts_file",
            "tests/test_properties.py::test_random_json_lines_as_a_prompts_file",
        ),
    ),
    Mutation(
        "opus-not-resampled-to-48k",
        "Opus gets a rate it cannot encode as 48 kHz (vidgen's -ar 48000)",
        "vidgen.media.audio:mux_arguments",
        lambda original: _without_resampling(original),
        ("tests/test_audio.py::test_opus_takes_a_rate_it_cannot_encode_at_48k",),
    ),
    Mutation(
        "audio-rate-misread",
        "the soundtrack is encoded at the model's own rate (16 kHz), as the recipe says",
        "vidgen.media.audio:sample_rate_of",
        lambda original: lambda pipe: 48000,
        ("tests/test_audio.py::test_webm_carries_opus",),
    ),
    Mutation(
        "scheduler-never-applied",
        "the preset's scheduler class and flow shift reach the pipeline",
        "vidgen.engine.loading:apply_scheduler",
        noop,
        (
            "tests/test_generate.py::test_scheduler_and_flow_shift_from_preset",
            "tests/test_presets_tiny.py::test_preset_generates_video_with_tiny_model[wan2.1-t2v-1.3b]",
        ),
    ),
    Mutation(
        "vae-tiling-flag-dropped",
        "--vae-tiling makes the VAE tile",
        "vidgen.engine.loading:prepare_pipeline",
        lambda original: _without_vae_tiling(original),
        ("tests/test_generate.py::test_cpu_options_offload_tiling_dtype_in_one_run",),
    ),
    Mutation(
        "conv3d-routes-training-too",
        "the oneDNN route leaves training (tensors that need gradients) to PyTorch's own kernels",
        "vidgen.engine.acceleration:onednn_conv3d",
        lambda original: _route_training_too(original),
        ("tests/test_acceleration.py::test_routed_conv3d_leaves_training_and_other_dtypes_to_torch",),
    ),
    Mutation(
        "torch-threads-not-set",
        "--threads reaches torch",
        "vidgen.threads:apply_threads",
        lambda original: _threads_without_torch(original),
        ("tests/test_threads.py::test_threads_reach_torch_and_ffmpeg",),
    ),
    Mutation(
        "ffmpeg-threads-not-set",
        "--threads reaches ffmpeg",
        "vidgen.media.video:run_ffmpeg",
        lambda original: _without_threads_option(original),
        ("tests/test_threads.py::test_threads_reach_torch_and_ffmpeg",),
    ),
    Mutation(
        "every-cache-is-first-block",
        "each --cache name installs its own cache",
        "vidgen.engine.acceleration:cache_config",
        lambda original: lambda name, pipe: original("first-block", pipe),
        (
            "tests/test_acceleration.py::test_every_cache_method_installs_on_wan[taylorseer]",
            "tests/test_acceleration.py::test_every_cache_method_installs_on_wan[pab]",
        ),
    ),
    Mutation(
        "attention-backend-not-set",
        "--attention-backend native sets the denoiser's attention backend",
        "vidgen.engine.acceleration:set_attention_backend",
        lambda original: _check_backend_only(original),
        ("tests/test_acceleration.py::test_native_attention_backend_runs_on_cpu",),
    ),
    Mutation(
        "server-runs-queued-jobs-while-stopping",
        "on SIGTERM the server finishes the job in hand; queued jobs run in their clients",
        "vidgen.server.serve:Server.__init__",
        lambda original: _worker_ignores_stopping(original),
        ("tests/test_server.py::test_sigterm_finishes_the_job_in_hand_and_queued_jobs_run_in_their_clients",),
    ),
    Mutation(
        "purple-read-as-blue",
        "the built-in model's videos follow their prompts, every colour among them",
        "vidgen.engine.generate:VideoGenerator.call_arguments",
        lambda original: _purple_as_blue(original),
        ("tests/test_embedded_model.py::test_videos_follow_their_prompts",),
    ),
    Mutation(
        "subclass-pipeline-refused",
        "a model whose class is a subclass of the preset's is accepted",
        "vidgen.engine.model_check:check_pipeline_class",
        lambda original: _family_only(original),
        ("tests/test_errors.py::test_same_family_or_subclass_pipeline_class_is_accepted",),
    ),
    Mutation(
        "any-pipeline-class-accepted",
        "a model of another family than the preset's is refused",
        "vidgen.engine.model_check:check_pipeline_class",
        noop,
        ("tests/test_errors.py::test_same_family_or_subclass_pipeline_class_is_accepted",),
    ),
    Mutation(
        "line-seeds-derived-differently",
        "a line's seed stays what it was (resumed batches and names depend on it)",
        "vidgen.batch.plan:derive_seed",
        lambda original: lambda base_seed, line_number: original(base_seed + 1, line_number),
        ("tests/test_batch.py::test_seeds_are_stable_per_line_and_follow_the_base_seed",),
    ),
    Mutation(
        "server-job-changes-the-working-folder",
        "a server job runs in its client's folder without changing the server process's own",
        "vidgen.server.jobs:run_request",
        lambda original: _in_the_jobs_folder(original),
        ("tests/test_server.py::test_a_job_runs_with_its_own_folder_and_standard_input_in_the_worker",),
    ),
    Mutation(
        "one-front-door-makes-its-own-video",
        "the same request through the command line, a server and a batch makes the same record and frames",
        "vidgen.engine.single:make_video",
        lambda original: _seed_off_by_one(original),
        ("tests/test_server.py::test_one_request_makes_the_same_video_through_every_front_door",),
    ),
    Mutation(
        "no-gallery-when-a-batch-ends",
        "a batch (again after --resume) writes DIR/index.html when it ends",
        "vidgen.batch.run:write_gallery_page",
        noop,
        ("tests/test_gallery.py::test_resume_writes_the_page_again_with_the_new_videos",),
    ),
    Mutation(
        "gallery-text-not-escaped",
        "a hostile prompt is shown on the gallery page as text, never run",
        "vidgen.batch.gallery:html.escape",
        lambda original: lambda text, quote=True: text,
        (
            "tests/test_gallery.py::test_a_batch_writes_a_page_of_its_videos_in_line_order",
            "tests/test_gallery.py::test_the_page_in_headless_chromium",
        ),
    ),
    Mutation(
        "sheet-takes-the-first-frames",
        "a contact sheet's tiles are the frames at evenly spread times, the last included",
        "vidgen.media.sheet:frame_indices",
        lambda original: lambda count, wanted: list(range(min(count, wanted))),
        (
            "tests/test_sheet.py::test_sheet_tiles_are_the_frames_at_their_times",
            "tests/test_sheet.py::test_sheet_defaults_to_eight_frames_in_two_rows",
        ),
    ),
    Mutation(
        "generation-not-post-processed",
        "--interpolate and --upscale on generate and on a batch line change the written file, and the recipe says how",
        "vidgen.media.post.apply:after_decode",
        lambda original: lambda frames, settings, recipe, progress: (frames, settings.fps),
        (
            "tests/test_post.py::test_generate_interpolates_after_the_decode_with_the_recipe_saying_how",
            "tests/test_post.py::test_batch_lines_take_interpolate_and_upscale",
        ),
    ),
    Mutation(
        "minterpolate-blends",
        "minterpolate moves the picture halfway instead of mixing its neighbours",
        "vidgen.media.post.ffmpeg:FILTERS",
        lambda original: {**original, "minterpolate": original["blend"]},
        ("tests/test_post.py::test_each_method_makes_the_frames_it_says[minterpolate]",),
    ),
    Mutation(
        "interpolation-makes-2n-minus-1",
        "--interpolate N gives N x n frames: the duration and the sound are kept",
        "vidgen.media.post.ffmpeg:interpolate",
        lambda original: lambda frames, *args: original(frames, *args)[: -(args[1] - 1)],
        (
            "tests/test_post.py::test_each_method_makes_the_frames_it_says",
            "tests/test_post.py::test_post_doubles_frames_and_fps_keeps_duration_and_sound",
        ),
    ),
    Mutation(
        "post-drops-the-sound",
        "vidgen post keeps the input's sound track",
        "vidgen.cli.post:read_sound",
        lambda original: lambda source: None,
        ("tests/test_post.py::test_post_doubles_frames_and_fps_keeps_duration_and_sound",),
    ),
    Mutation(
        "model-hash-not-recorded",
        "the recipe names each model file a step used and its sha256",
        "vidgen.media.post.weights:record",
        lambda original: lambda path: {"file": path.name},
        (
            "tests/test_post.py::test_rife_from_a_weights_file_is_recorded_with_its_hash",
            "tests/test_post.py::test_upscaler_spandrel_detects_in_tiles",
        ),
    ),
    Mutation(
        "upscaler-tiles-without-context",
        "an upscaler's tiles, each run with its neighbours' pixels around it, stitch into the whole frame's answer",
        "vidgen.media.post.upscaler:OVERLAP",
        lambda original: 0,
        ("tests/test_post.py::test_upscaler_spandrel_detects_in_tiles",),
    ),
    Mutation(
        "post-options-unchecked",
        "vidgen post refuses a factor out of range and an unknown method in one line, exit 2, before any work",
        "vidgen.cli.post:check_values",
        noop,
        (
            "tests/test_post.py::test_bad_input_is_one_line_exit_2_nothing_written[factor-0]",
            "tests/test_post.py::test_bad_input_is_one_line_exit_2_nothing_written[upscale-16]",
            "tests/test_post.py::test_bad_input_is_one_line_exit_2_nothing_written[method-unknown]",
        ),
    ),
    Mutation(
        "post-overwrites-unasked",
        "vidgen post refuses an output that exists without --overwrite, before any work",
        "vidgen.cli.post:check_output_path",
        noop,
        ("tests/test_post.py::test_bad_input_is_one_line_exit_2_nothing_written[output-exists]",),
    ),
    Mutation(
        "model-files-not-checked",
        "a model file that is junk is refused in one line, exit 2, before the generation's pipeline loads",
        "vidgen.media.post.plan:file_problem",
        lambda original: lambda flag, value, check: None,
        ("tests/test_post.py::test_generate_refuses_a_bad_model_file_before_loading",),
    ),
]


# ---- how the mutations break things (referenced above through lambdas) ----


def _in_the_jobs_folder(original):
    """What the server did before jobs carried their folder: os.chdir around the job."""

    def call(job):
        home = os.getcwd()
        os.chdir(job.env.cwd)
        try:
            return original(job)
        finally:
            os.chdir(home)

    return call


def _traceback_on_failure(original):
    def failed(self, job, error, **kwargs):
        from vidgen import ui

        ui.warn('Traceback (most recent call last):\n  File "vidgen/batch/executor.py", in make\nValueError: leaked')
        return original(self, job, error, **kwargs)

    return failed


def _seed_off_by_one(original):
    def make_video(job, generator, context=None):
        from dataclasses import replace

        return original(replace(job, seed=job.seed + 1), generator, *(() if context is None else (context,)))

    return make_video


def _refuse_every_file(file, name, fmt):
    from vidgen.errors import UsageError

    raise UsageError(f"cannot read prompts file {name}: refused (mutant)")


def _without_resampling(original):
    def mux_arguments(fmt, audio, wav):
        inputs, options = original(fmt, audio, wav)
        if "-ar" in options:
            at = options.index("-ar")
            options = options[:at] + options[at + 2 :]
        return inputs, options

    return mux_arguments


def _without_vae_tiling(original):
    import dataclasses

    def prepare_pipeline(pipe, settings, **kwargs):
        return original(pipe, dataclasses.replace(settings, vae_tiling=False), **kwargs)

    return prepare_pipeline


def _route_training_too(original):
    def onednn_conv3d(module, torch_path, input, weight, bias):
        import torch

        if input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32:
            return torch.mkldnn_convolution(
                input.contiguous(memory_format=torch.channels_last_3d),
                weight,
                bias,
                module.padding,
                module.stride,
                module.dilation,
                module.groups,
            )
        return original(module, torch_path, input, weight, bias)

    return onednn_conv3d


def _threads_without_torch(original):
    def apply_threads(requested, *, local_processes=None):
        from vidgen import threads as acceleration

        count = acceleration.cpu_thread_count(requested, local_processes=local_processes)
        acceleration._configured_threads = count  # ffmpeg still gets it; torch does not
        return count

    return apply_threads


def _without_threads_option(original):
    def run_ffmpeg(command, *args, **kwargs):
        if "-threads" in command:  # the encoder is not given the count (encoder_thread_options still answers it)
            at = command.index("-threads")
            command = command[:at] + command[at + 2 :]
        return original(command, *args, **kwargs)

    return run_ffmpeg


def _check_backend_only(original):
    def set_attention_backend(pipe, name):
        from vidgen.engine import acceleration
        from vidgen.errors import UsageError

        if name not in acceleration.attention_backends():
            raise UsageError(f"unknown attention backend {name!r}")

    return set_attention_backend


def _worker_ignores_stopping(original):
    import threading

    class StoppingUnseenByTheWorker(threading.Event):
        def is_set(self):  # the worker's loop (Server.work) runs queued jobs on as if not stopping
            return False if sys._getframe(1).f_code.co_name == "work" else super().is_set()

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.stopping = StoppingUnseenByTheWorker()

    return __init__


def _purple_as_blue(original):
    def call_arguments(self, *args, **kwargs):
        arguments = original(self, *args, **kwargs)
        if isinstance(arguments.get("prompt"), str):
            arguments["prompt"] = arguments["prompt"].replace("purple", "blue")
        return arguments

    return call_arguments


def _family_only(original):
    def check_pipeline_class(actual, expected, model, preset):
        import diffusers

        from vidgen.errors import UsageError

        if expected is None or actual == expected:
            return
        actual_class, expected_class = getattr(diffusers, actual, None), getattr(diffusers, expected, None)
        if (
            actual_class is not None
            and expected_class is not None
            and actual_class.__module__.rsplit(".", 1)[0] == expected_class.__module__.rsplit(".", 1)[0]
        ):
            return
        raise UsageError(f"model {model} is a {actual}, but preset {preset} expects a {expected}")

    return check_pipeline_class


# ---- the plugin: applied in every process that imports this module with VIDGEN_MUTANT set ----

ENV_NAME = "VIDGEN_MUTANT"
ENV_REPORT = "VIDGEN_MUTANT_REPORT"  # a JSON-lines file: the test outcomes, and a missing target


def _report(**entry: Any) -> None:
    path = os.environ.get(ENV_REPORT)
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def _resolve(module: Any, path: str) -> tuple[Any, str]:
    """The object that holds the last name of `path`, and that name."""
    owner = module
    *parents, last = path.split(".")
    for name in parents:
        owner = getattr(owner, name)
    if not hasattr(owner, last):
        raise AttributeError(f"{module.__name__} has no {path}")
    return owner, last


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, after: Callable[[Any], None]):
        self.inner, self.after = inner, after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.after(module)

    def __getattr__(self, name):  # get_source and the like, for tracebacks
        return getattr(self.inner, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches one module right after it is executed, before anyone imports from it."""

    def __init__(self, module_name: str, after: Callable[[Any], None]):
        self.module_name, self.after, self.busy = module_name, after, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module_name or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.after)
        return spec


_applied: list[str] = []


def install(name: str) -> Mutation:
    """Arrange for mutation `name` to be applied when its target's module is imported."""
    mutation = next((m for m in MUTATIONS if m.name == name), None)
    if mutation is None:
        raise SystemExit(f"tests/test_mutants.py: no mutation named {name!r}")
    if mutation.target is None:
        return mutation
    module_name, _, path = mutation.target.partition(":")

    def apply(module: Any) -> None:
        try:
            owner, last = _resolve(module, path)
        except AttributeError as error:
            _report(missing=f"{mutation.target}: {error}")
            raise
        setattr(owner, last, mutation.breaks(getattr(owner, last)))
        _applied.append(mutation.target)

    if module_name in sys.modules:
        apply(sys.modules[module_name])
    else:
        sys.meta_path.insert(0, _PatchOnImport(module_name, apply))
    return mutation


_ACTIVE = install(os.environ[ENV_NAME]) if os.environ.get(ENV_NAME) else None


def pytest_configure(config):
    if _ACTIVE is None:
        return
    try:  # a failing example is reported as found: shrinking it would rerun whole batches
        from hypothesis import Phase, settings

        settings.register_profile("vidgen-mutants", phases=[Phase.explicit, Phase.generate])
        settings.load_profile("vidgen-mutants")
    except ImportError:
        pass
    if _ACTIVE.setup is not None:
        _ACTIVE.setup()
    if _ACTIVE.target is not None:
        module_name = _ACTIVE.target.partition(":")[0]
        try:
            importlib.import_module(module_name)  # applies it now, or says the target is gone
        except ImportError as error:
            _report(missing=f"{_ACTIVE.target}: {error}")
            raise
        if _ACTIVE.target not in _applied:  # imported some way this file's finder did not see
            _report(missing=f"{_ACTIVE.target}: imported without the mutation")
            raise RuntimeError(f"mutation {_ACTIVE.name} was not applied")


def pytest_runtest_logreport(report):
    if _ACTIVE is not None and (report.when == "call" or report.outcome != "passed"):
        _report(nodeid=report.nodeid, when=report.when, outcome=report.outcome)


# ---- the runner ----


def check() -> list[str]:
    """Without running anything: every target resolves and every test is still defined.
    Cheap enough for the suite (tests/test_mutants.py), so a rename fails loudly there."""
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = []
    for mutation in MUTATIONS:
        if mutation.target is not None:
            module_name, _, path = mutation.target.partition(":")
            try:
                _resolve(importlib.import_module(module_name), path)
            except (ImportError, AttributeError) as error:
                problems.append(f"{mutation.name}: target {mutation.target}: {error}")
            # A public seam: a private name is the module's own business, free to move in a refactor.
            private = [part for part in path.split(".") if part.startswith("_") and not part.endswith("__")]
            if private:
                problems.append(f"{mutation.name}: target {mutation.target} is private ({', '.join(private)}): break a public name")
        for test in mutation.tests:
            file, _, rest = test.partition("::")
            source = os.path.join(root, file)
            function = rest.split("[")[0]
            if not os.path.isfile(source) or not re.search(rf"^def {re.escape(function)}\(", open(source).read(), re.M):
                problems.append(f"{mutation.name}: no test {test}")
    names = [mutation.name for mutation in MUTATIONS]
    problems += [f"two mutations named {name}" for name in sorted({n for n in names if names.count(n) > 1})]
    return problems


def _matches(nodeid: str, wanted: str) -> bool:
    return nodeid == wanted or ("[" not in wanted and nodeid.startswith(wanted + "["))


# What every mutation's pytest imports from outside vidgen, imported once by the runner: each
# mutation then runs in a child forked from it, which imports vidgen and the tests anew with its
# mutation in place (vidgen is never imported here), and skips the 3 to 4 s a fresh interpreter
# spent on these. HF_HUB_OFFLINE as conftest.py sets it, before huggingface_hub reads it.
_PRELOAD = ("numpy", "PIL.Image", "torch", "transformers", "diffusers", "imageio", "typer", "rich.console", "pytest")


def _preload() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name in _PRELOAD:
        importlib.import_module(name)
    import diffusers

    for name in ("WanPipeline", "AutoencoderKLWan", "FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler"):
        getattr(diffusers, name)  # diffusers imports its classes on first use


@dataclass
class _Running:
    mutation: Mutation
    pid: int
    started: float
    output: str  # the child's stdout and stderr, one file each
    errors: str
    report: str
    left_before: set[str]


def start_one(mutation: Mutation, root: str, hook_dir: str, report_dir: str) -> _Running:
    """Fork a child that runs the mutation's tests in pytest with this file as a plugin."""
    report = os.path.join(report_dir, f"{mutation.name}.jsonl")
    output, errors = (os.path.join(report_dir, f"{mutation.name}.{kind}") for kind in ("out", "err"))
    left_before = {path for path in mutation.leaves if os.path.lexists(os.path.join(root, path))}
    started = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: as `python -m pytest ...` in `root` would start, this file's plugin first
        code = 3
        try:
            os.environ.update({ENV_NAME: mutation.name, ENV_REPORT: report, "COLUMNS": "400"})  # whole lines in the -ra summary
            # Python processes the tests start (vidgen serve, python -m vidgen) get the mutation too.
            os.environ["PYTHONPATH"] = os.pathsep.join(
                [hook_dir, root] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
            )
            os.chdir(root)
            sys.path[:] = [root] + [entry for entry in sys.path if entry not in ("", os.path.dirname(os.path.abspath(__file__)))]
            for fd, path in ((1, output), (2, errors)):
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(handle, fd)
                os.close(handle)
            import pytest

            arguments = ["-q", "-p", "tests.test_mutants", "-p", "no:cacheprovider", "-W", "ignore", *mutation.tests]
            code = int(pytest.main(arguments))
        except BaseException:  # noqa: B036 (the child must end here, whatever happened)
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return _Running(mutation, pid, started, output, errors, report, left_before)


def finish_one(running: _Running, returncode: int, root: str) -> tuple[str, str, float]:
    """(status, detail, seconds) for a mutation whose child has ended."""
    mutation, report = running.mutation, running.report
    seconds = time.monotonic() - running.started
    done = SimpleNamespace(returncode=returncode, stdout=_read(running.output), stderr=_read(running.errors))
    for path in set(mutation.leaves) - running.left_before:
        import shutil

        shutil.rmtree(os.path.join(root, path), ignore_errors=True)
    entries = []
    if os.path.exists(report):
        with open(report) as handle:
            entries = [json.loads(line) for line in handle if line.strip()]
    missing = [entry["missing"] for entry in entries if "missing" in entry]
    if missing:
        return "MISSING", missing[0], seconds
    outcomes: dict[str, str] = {}
    for entry in entries:
        if "nodeid" in entry and outcomes.get(entry["nodeid"]) in (None, "passed"):
            outcomes[entry["nodeid"]] = "error" if entry["when"] != "call" and entry["outcome"] == "failed" else entry["outcome"]
    tail = "\n".join(done.stdout.strip().splitlines()[-15:] + done.stderr.strip().splitlines()[-5:])
    problems = []
    for wanted in mutation.tests:
        items = {nodeid: outcome for nodeid, outcome in outcomes.items() if _matches(nodeid, wanted)}
        if not items:
            return ("MISSING" if done.returncode in (0, 1, 4, 5) else "ERROR"), f"no test ran for {wanted}\n{tail}", seconds
        problems += [f"{nodeid} {outcome}" for nodeid, outcome in items.items() if outcome != "failed"]
    if any(problem.endswith(("error", "skipped")) for problem in problems):
        return "ERROR", "; ".join(problems) + "\n" + tail, seconds
    if problems:
        return "SURVIVED", "; ".join(problems), seconds
    why = [line for line in done.stdout.splitlines() if line.startswith("FAILED ")]  # pytest's -ra summary
    return "caught", "\n".join([f"{len(outcomes)} test(s) failed"] + why), seconds


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def run_all(chosen: list[Mutation], root: str, hook_dir: str, scratch: str, jobs: int):
    """(mutation, (status, detail, seconds)) in the list's order, `jobs` children at a time."""
    if len(chosen) > 1:  # one mutation's child would import them itself: no time saved
        _preload()
    pending, running, results = list(chosen), {}, {}
    following = 0
    while pending or running:
        while pending and len(running) < max(1, jobs):
            child = start_one(pending.pop(0), root, hook_dir, scratch)
            running[child.pid] = child
        pid, status = os.wait()
        child = running.pop(pid)
        results[child.mutation.name] = finish_one(child, os.waitstatus_to_exitcode(status), root)
        while following < len(chosen) and chosen[following].name in results:  # in order, as soon as known
            yield chosen[following], results[chosen[following].name]
            following += 1


def main(argv: list[str]) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="mutations run at a time (default 1)")
    parser.add_argument("--show", action="store_true", help="also show why each caught mutation's tests failed")
    parser.add_argument("--tests", nargs="+", metavar="NODEID", help="run the named mutations against these tests instead of theirs")
    parser.add_argument("--check", action="store_true", help="only check that every target and test still exists (seconds)")
    parser.add_argument("--baseline", action="store_true", help="first run the chosen mutations' tests unbroken: they must pass")
    options = parser.parse_args(argv)

    if options.list:
        for mutation in MUTATIONS:
            print(f"{mutation.name}\n  breaks: {mutation.claim}\n  target: {mutation.target or '(setup)'}")
            print("".join(f"  test:   {test}\n" for test in mutation.tests), end="")
        return 0
    unknown = [name for name in options.names if name not in {m.name for m in MUTATIONS}]
    if unknown:
        print(f"unknown mutation(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [m for m in MUTATIONS if not options.names or m.name in options.names]
    if options.tests:
        import dataclasses

        chosen = [dataclasses.replace(m, tests=tuple(options.tests)) for m in chosen]

    if options.check:
        problems = check()
        print("\n".join(problems) or f"{len(MUTATIONS)} mutations: every target and test exists")
        return 1 if problems else 0

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if options.baseline:
        import subprocess

        tests = sorted({test for mutation in chosen for test in mutation.tests})
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=root, env=env)
        if done.returncode != 0:
            print("the tests fail unbroken: a mutation cannot be judged by them", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="vidgen-mutants-") as scratch:
        hook_dir = os.path.join(scratch, "hook")
        os.mkdir(hook_dir)
        with open(os.path.join(hook_dir, "sitecustomize.py"), "w") as handle:
            # Python processes the tests start (vidgen serve, python -m vidgen) get the mutation too.
            handle.write("import os\nif os.environ.get('VIDGEN_MUTANT'):\n    import tests.test_mutants  # noqa: F401\n")
        started = time.monotonic()
        failures = 0

        for mutation, (status, detail, seconds) in run_all(chosen, root, hook_dir, scratch, options.jobs):
            print(f"{status:9} {mutation.name:42} {seconds:6.1f} s  {detail.splitlines()[0] if detail else ''}", flush=True)
            failures += status != "caught"
            if "\n" in detail and (status != "caught" or options.show):
                print("          " + "\n          ".join(detail.splitlines()[1:]), flush=True)
        print(f"{len(chosen) - failures} of {len(chosen)} mutations caught in {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


# ---- in the suite: the list is checked, and the runner itself catches and misses as it should ----
# (every mutation takes minutes: run this file as a script for that, as its docstring says)


def test_every_mutation_names_a_target_and_tests_that_exist():
    assert check() == []


def _run_self(*args: str):
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, os.path.abspath(__file__), *args], cwd=root, capture_output=True, text=True)


@pytest.mark.slow
def test_the_runner_reports_a_caught_mutation_and_a_survivor():
    caught = _run_self("line-seeds-derived-differently")
    assert caught.returncode == 0 and caught.stdout.startswith("caught "), caught.stdout + caught.stderr
    # The same break against a test that does not claim it: reported, and the run fails.
    survived = _run_self("line-seeds-derived-differently", "--tests", "tests/test_batch.py::test_names_are_short_safe_slugs")
    assert survived.returncode == 1 and survived.stdout.startswith("SURVIVED "), survived.stdout + survived.stderr


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
