"""Whole shell calls with a warm `vidgen serve` against without one (issue 10).

    .venv/bin/python benchmarks/server_calls.py            # 20 calls each, alternating
    .venv/bin/python benchmarks/server_calls.py --calls 5 --json out.json

Runs `vidgen "a red circle moving right on a black background" -o x.mp4 --overwrite` on
the built-in model as separate processes, alternating one call through a warm server
(started here, in a temporary XDG_RUNTIME_DIR, and warmed by one call first) with one
call with VIDGEN_NO_SERVER=1, and prints each call's wall-clock time and the medians.
Not a test: the figures depend on the machine and its load. On a CPU shared with other
busy processes, both kinds of call get VIDGEN_THREADS=1 (`--threads`, as docs/generate.md's "CPU
threads" advises; `--threads 0` leaves torch's default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALLS = 20  # calls of each kind
PROMPT = "a red circle moving right on a black background"
VIDGEN = str(Path(sys.executable).with_name("vidgen"))  # the console script, as a shell runs it
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.timing import alternate, medians, print_round, time_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="calls of each kind")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=1, help="VIDGEN_THREADS for every call (0: torch's default)")
    options = parser.parse_args()

    runtime = Path(tempfile.mkdtemp(prefix="vg-bench-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="vg-bench-work-"))
    os.chmod(runtime, 0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "VIDGEN_HOME": str(work / "home")}
    env.pop("VIDGEN_NO_SERVER", None)
    if options.threads:
        env["VIDGEN_THREADS"] = str(options.threads)
    command = [VIDGEN, PROMPT, "-o", "x.mp4", "--overwrite", "--seed", "1"]
    server = subprocess.Popen([VIDGEN, "serve", "--keep-alive", "-1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (runtime / "vidgen" / "vidgen.sock").exists():
            if server.poll() is not None:
                raise SystemExit("vidgen serve did not start")
            time.sleep(0.1)
        warm_up = time_command(command, cwd=work, env=env)  # loads the model into the server
        load = os.getloadavg()
        kinds = {"server": (command, env), "no server": (command, {**env, "VIDGEN_NO_SERVER": "1"})}
        times = alternate(kinds, runs=options.calls, cwd=work, swap=False, report=print_round("call"))
        served, in_process = times["server"], times["no server"]
        load_after = os.getloadavg()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    median_served, median_in_process = medians(times)["server"], medians(times)["no server"]
    figures = {
        "calls_each": options.calls,
        "threads": options.threads or "torch default",
        "warm_up_call_seconds": round(warm_up, 2),
        "server_seconds": [round(value, 2) for value in served],
        "no_server_seconds": [round(value, 2) for value in in_process],
        "median_server": round(median_served, 2),
        "median_no_server": round(median_in_process, 2),
        "speedup": round(median_in_process / median_served, 2),
        "load_average_before_after": [round(load[0], 2), round(load_after[0], 2)],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(figures, indent=2))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
