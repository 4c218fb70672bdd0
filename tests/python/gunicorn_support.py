"""Shared by the tests that run apps in several processes (Gunicorn with gevent workers, as Dify
deploys): a free loopback port, starting Gunicorn and waiting until it answers, stopping it, and
removing the shared-memory regions a test made under a name. Every wait is bounded."""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import IO, Dict, Optional, Tuple

import sluice


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_regions(name: str) -> None:
    """Removes the region `name` and every region named ``<name>.*`` (what a policy or a
    balancer called `name` made)."""
    for path in glob.glob(f"/dev/shm/sluice.{name}") + glob.glob(f"/dev/shm/sluice.{name}.*"):
        try:
            sluice.remove_shared_region(os.path.basename(path)[len("sluice."):])
        except sluice.NotFound:
            pass


def start_gunicorn(app_dir, app: str, env: Dict[str, str], *, workers: int,
                   worker_connections: int, log: Optional[IO] = None
                   ) -> Tuple[subprocess.Popen, str]:
    """Gunicorn serving `app` ("module:object" in `app_dir`) on a free loopback port with gevent
    workers, once its /health answers (within 60 s); returns the server and its base URL. The
    server runs in its own session, so `stop_gunicorn` can kill exactly what it started. Its
    stderr goes to `log` (a file) when given, else to a pipe read only when it fails to start
    (fine for a few log lines; a run that logs many errors must pass a file)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
         "--worker-connections", str(worker_connections), "-b", f"127.0.0.1:{port}",
         "--chdir", str(app_dir), "--graceful-timeout", "5", app],
        env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.PIPE,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, \
            server.stderr.read().decode()[-3000:] if server.stderr else "gunicorn exited"
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return server, base
        except OSError:
            pass
        assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
        time.sleep(0.1)


def stop_gunicorn(server: subprocess.Popen) -> None:
    """SIGTERM (the master stops its workers), SIGKILL to the session after 30 s."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    if server.stderr is not None:
        server.stderr.close()
