"""`vidgen batch`: a prompts file -> many videos in one folder, resumable, shardable.

Every process (one, or each of N under `accelerate launch`) runs the same steps and
splits the work only at step 4, so they all agree on the plan without talking:

1. read the prompts file (.txt, .jsonl, .csv, or `-` for standard input) as a stream
   (vidgen.settings.prompts); a bad line keeps its error and becomes a failed record instead of
   stopping the batch, a file that cannot be a prompts file stops it before anything
   is created;
2. plan jobs: one small record per video. Settings merge preset < command line < line; a line
   without a seed gets one derived from the base seed (`--seed`, default 0) and its
   line number; outputs are named `LINE-SLUG-sSEED.mp4` or the line's `output`, always
   inside DIR;
3. prepare DIR: take its lock (one batch per folder; the kernel drops it when a process
   dies), repair a torn manifest end and remove vidgen's stale temp files (main
   process only, before anyone writes), and with --resume skip every video whose
   latest record says done and whose file still has the recorded SHA-256; every
   process learns whether all others got this far, so none waits for one that failed;
4. each process takes jobs i % N and makes them with an `Executor` (executor.py: the model
   loaded once, each video through vidgen.engine.making.make_video), appending one manifest record
   per finished or failed video (a single O_APPEND write, so processes never interleave);
   a first SIGTERM stops it after the current video, a second at once;
5. the main process waits for the others, reads this run's records and reports;
6. and writes DIR/index.html, the gallery page of the whole manifest (not with --no-gallery).

Modules: plan (step 2), check (steps 1-2 and the checks before anything is created), folder (step 3: manifest, lock, temp files, resume),
executor (step 4, one video: the public interface run and cluster share), run (the whole run
and report), launch (`--processes N`), cluster (`--ray`: step 4 as a
Ray Data job, the driver writing the manifest), gallery (step 6, and `vidgen gallery DIR`);
vidgen.processes holds the processes' places and their barriers (also `vidgen generate
--parallel`'s).
"""

from vidgen.batch.folder import LOCK_NAME, MANIFEST_NAME, file_sha256
from vidgen.batch.plan import derive_seed, short_slug

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "derive_seed", "file_sha256", "run_batch", "short_slug"]


def __getattr__(name: str):
    # run_batch on first use: it brings the engine (torch), and the plan (step 2) must not need it.
    if name == "run_batch":
        from vidgen.batch.run import run_batch

        return run_batch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
