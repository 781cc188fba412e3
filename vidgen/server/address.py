"""Where `vidgen serve` listens and how to ask it: the socket's private folder and path, HTTP
over a Unix socket, `find_server`, `request`, `get_json`. Light (the standard library only):
the client (vidgen.cli.client) and the server's modules both use it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from vidgen import ui
from vidgen.environment import variable
from vidgen.settings.presets import vidgen_home

API = "v1"
SOCKET_NAME = "vidgen.sock"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, with its NUL


def socket_dir() -> Path:
    runtime = variable("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "vidgen"
    return vidgen_home() / "run"


def socket_path() -> Path:
    return socket_dir() / SOCKET_NAME


def private_dir_problem(folder: Path) -> str | None:
    """Why `folder` is not safe for the socket (None: it is): it must be a real directory
    (not a symbolic link), owned by this user, that no one else may enter or write."""
    try:
        status = os.lstat(folder)
    except FileNotFoundError:
        return f"{folder} does not exist"
    if not stat.S_ISDIR(status.st_mode):
        return f"{folder} is not a directory"
    if status.st_uid != os.getuid():
        return f"{folder} belongs to another user (uid {status.st_uid})"
    if status.st_mode & 0o077:
        return f"{folder} is open to other users (mode {stat.S_IMODE(status.st_mode):04o}; it must be 0700)"
    return None


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection, over a Unix socket instead of TCP."""

    def __init__(self, path: Path, timeout: float | None = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_file = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_file)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        # http.client lets go of `sock` once an HTTP/1.0 reply has begun (the reply reads
        # on through its own file object); the job stream still needs the socket itself.
        self.raw_socket = sock


def find_server() -> Path | None:
    """The socket of a server this user may talk to, or None (then: in-process)."""
    path = socket_path()
    if not path.exists() or len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        return None
    problem = private_dir_problem(path.parent)
    if problem is not None:
        ui.warn(f"not using the vidgen server: {problem}")
        return None
    return path


def request(method: str, route: str, body: dict[str, Any] | None = None, *, path: Path | None = None, timeout: float | None = 10.0):
    """One request; returns (connection, response). OSError when no server answers."""
    connection = UnixHTTPConnection(path or socket_path(), timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        connection.request(method, f"/{API}/{route}", body=data, headers=headers)
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        raise ConnectionError(str(error)) from error
    return connection, response


def get_json(method: str, route: str, *, path: Path | None = None) -> dict[str, Any] | None:
    """A small request's JSON reply, or None when no server answers."""
    try:
        connection, response = request(method, route, {} if method == "POST" else None, path=path)
    except ConnectionError:
        return None
    try:
        return json.loads(response.read() or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


# ---- paths: resolved here, in the client's working folder ----
