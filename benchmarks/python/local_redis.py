"""A throwaway redis-server on a free loopback port, for benchmarks and tests.

    with LocalRedis() as redis_server:
        client = redis.Redis(port=redis_server.port)

It never touches a system Redis: no persistence, bound to 127.0.0.1, stopped on exit.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def _die_with_parent() -> None:
    # A test process that aborts never reaches __exit__; the kernel then stops its server.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """`extra_args` go to redis-server after sluice's own (e.g. "--requirepass", "pw"); a
    `config_file` goes first, where redis-server wants it (a Sentinel needs one); `port` 0 picks a
    free one. start() after kill() starts it again on the same port."""

    def __init__(self, start_timeout: float = 10.0, *, extra_args=(), config_file: str = "",
                 port: int = 0) -> None:
        self.port = port or free_port()
        self._start_timeout = start_timeout
        self._extra_args = [str(a) for a in extra_args]
        self._config_file = config_file
        self._process: subprocess.Popen | None = None
        # Its working directory: a replica's full sync writes dump.rdb there (not in the cwd).
        self._dir = tempfile.mkdtemp(prefix="sluice-redis-")

    def __enter__(self) -> "LocalRedis":
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        """Starts redis-server and waits until it answers PING (with any reply: a server with
        requirepass answers -NOAUTH, and it is up)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/install-deps.sh")
        argv = [binary] + ([self._config_file] if self._config_file else [])
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
                 "--dir", self._dir]
        self._process = subprocess.Popen(
            argv + self._extra_args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break  # it exited (a bad argument, a port taken)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-load (start() brings it back on the same port)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: Redis stalls; connections stay open but nothing answers."""
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._process.send_signal(signal.SIGCONT)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)
