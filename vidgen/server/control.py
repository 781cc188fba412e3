"""`vidgen serve --status` and `--stop`: the client side (no torch), and how the server's
times read in its log and in --status.
"""

from __future__ import annotations

import json

from vidgen import locking, ui
from vidgen.engine.pipeline_cache import KEEP_FOREVER
from vidgen.errors import ExitCode
from vidgen.server.address import get_json, socket_path

LOCK_NAME = "server.lock"  # flock held while a server runs: one server per socket


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_keep_alive(seconds: float) -> str:
    if seconds == KEEP_FOREVER:
        return "-1 (never unload)"
    if seconds == 0:
        return "0 (unload after each job)"
    return _format_seconds(seconds)


def print_status(as_json: bool) -> int:
    status = get_json("GET", "status") if socket_path().exists() else None
    if status is None:
        if as_json:
            ui.emit_json({"running": False, "socket": str(socket_path())})
        ui.warn(f"no vidgen server is running (socket {socket_path()})")
        return ExitCode.FAILURE
    if as_json:
        ui.emit_json({"running": True, **status})
        return ExitCode.SUCCESS
    rss = status["memory"].get("rss_bytes")
    ui.emit_result(
        f"vidgen server: pid {status['pid']}, up {_format_seconds(status['uptime_seconds'])}, keep-alive "
        f"{describe_keep_alive(status['keep_alive_seconds'])}{', stopping' if status.get('stopping') else ''}"
    )
    ui.emit_result(f"socket: {status['socket']}")
    memory = f"memory: {rss / 2**20:.0f} MiB resident" if rss else "memory: unknown"
    for device, allocated in (status["memory"].get("cuda_allocated_bytes") or {}).items():
        memory += f", {allocated / 2**30:.1f} GiB on {device}"
    ui.emit_result(memory)
    running = status.get("running")
    if running:
        ui.emit_result(
            f"running: job {running['job']} {running['command']} {json.dumps(running['what'], ensure_ascii=False)} for "
            f"{_format_seconds(running['running_seconds'] or 0)} (client pid {running['client_pid']})"
        )
    else:
        ui.emit_result("running: nothing")
    ui.emit_result(f"queued: {len(status['queued'])} job{'s' if len(status['queued']) != 1 else ''}, {status['jobs_done']} done")
    if not status["models"]:
        ui.emit_result("models: none loaded")
    for model in status["models"]:
        unloads = "never unloads" if model["unloads_in_seconds"] is None else f"unloads in {_format_seconds(model['unloads_in_seconds'])}"
        extras = "".join(f", {name} {model[name]}" for name in ("offload", "cache") if model[name] != "none")
        extras += ", compiled" if model["compiled"] else ""
        extras += "".join(f", lora {lora}" for lora in model["loras"])
        ui.emit_result(
            f"model: {model['model']} ({model['pipeline']} on {model['device']}, {model['dtype']}{extras}); "
            f"{model['jobs']} jobs, idle {_format_seconds(model['idle_seconds'])}, {unloads}"
        )
    return ExitCode.SUCCESS


def stop_server() -> int:
    path = socket_path()
    reply = get_json("POST", "stop") if path.exists() else None
    if reply is None:
        ui.warn(f"no vidgen server is running (socket {path})")
        return ExitCode.FAILURE
    pid = reply.get("pid")
    # It finishes the job in hand first. It is gone when its lock is free (the kernel
    # drops a dead process's locks, zombie or not).
    locking.wait_until_free(path.parent / LOCK_NAME)
    ui.info(f"stopped the vidgen server (pid {pid})")
    return ExitCode.SUCCESS
