"""The real `aquifer serve` binary as a child process, and a TCP proxy that can cut
connections: the pieces the fixtures in conftest.py are made of."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

ADMIN_SECRET = "pyclient-admin-secret-0123456789"
REPO = Path(__file__).resolve().parents[3]


def find_binary() -> str:
    """AQUIFER_BIN (set by the ctest entry), else the build folder's binary. Missing: fail."""
    binary = os.environ.get("AQUIFER_BIN") or str(REPO / "build" / "src" / "aquifer" / "cli" / "aquifer")
    if not os.access(binary, os.X_OK):
        raise RuntimeError(
            f"the aquifer binary {binary} is missing: build it (make build, or "
            "cmake --build build --target aquifer) or set AQUIFER_BIN"
        )
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    try:
        import ctypes

        # PR_SET_PDEATHSIG: killed when the thread that started it ends (start servers from
        # the main thread), or when a ctest timeout kills the test run
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


class AquiferServer:
    """`aquifer serve` on a fixed free port and its own data dir; restartable."""

    def __init__(self, env: Optional[Dict[str, str]] = None) -> None:
        self.binary = find_binary()
        self.data = tempfile.mkdtemp(prefix="aquifer-pyclient-")
        self.port = free_port()
        self.extra_env = dict(env or {})
        self.proc: Optional[subprocess.Popen[str]] = None
        self.lines: List[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.update(
            {
                "AQUIFER_ADMIN_SECRET": ADMIN_SECRET,
                "AQUIFER_SERVER_HANDLER_THREADS": "8",
                "AQUIFER_SERVER_IO_THREADS": "2",
            }
        )
        env.update(self.extra_env)
        for attempt in range(20):  # the port may still be held for a moment after a restart
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--port", str(self.port), "--data", self.data],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                preexec_fn=_die_with_parent,
            )
            found = threading.Event()
            proc = self.proc

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    self.lines.append(line)
                    if re.search(r"listening on http://", line):
                        found.set()

            threading.Thread(target=pump, daemon=True).start()
            deadline = time.monotonic() + timeout
            while not found.is_set():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if found.is_set():
                return
            proc.kill()
            proc.wait()
            if "in use" not in "".join(self.lines[-5:]).lower() or attempt == 19:
                raise RuntimeError("aquifer serve did not start:\n" + self.output())
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM (graceful: WebSocket sessions get close code 1001), then wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def output(self) -> str:
        return "".join(self.lines[-80:])


class CuttingProxy:
    """A TCP proxy to a server that can drop every open connection at once (no close
    frame, no FIN to the client first: both sockets are shut down) and can swallow the
    next answer: it forwards a request upstream, then closes the client's connection
    instead of relaying the answer (a lost answer)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.pairs: List[List[socket.socket]] = []
        self.swallow_answers = 0  # answers still to drop
        self.swallowed = 0
        self.connections = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            pair = [client, upstream]
            with self.lock:
                self.pairs.append(pair)
                self.connections += 1
            threading.Thread(target=self._pipe, args=(pair,), daemon=True).start()

    def _pipe(self, pair: List[socket.socket]) -> None:
        client, upstream = pair
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 0.5)
                if self.closed:
                    break
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if sock is upstream:
                        with self.lock:
                            swallow = self.swallow_answers > 0
                            if swallow:
                                self.swallow_answers -= 1
                                self.swallowed += 1
                        if swallow:
                            raise OSError("answer swallowed")
                        client.sendall(data)
                    else:
                        upstream.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket cut() closed
            pass
        finally:
            self._close_pair(pair)

    def _close_pair(self, pair: List[socket.socket]) -> None:
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)

    def cut(self) -> int:
        """Drops every open connection; returns how many."""
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._close_pair(pair)
        return len(pairs)

    def open_connections(self) -> int:
        with self.lock:
            return len(self.pairs)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()
