"""Run ``annotate serve`` as a child process on 127.0.0.1 (for tests, benchmarks and demos).

The server binds port 0 and prints its URL; we read that line, so there is no race for a free port.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)  # every line the server printed so far

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash; committed data must survive it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _pump(stream, lines: list[str], q: queue.Queue) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))
        q.put(line)
    q.put(None)


def start_server(db_url: str, timeout: float = 60.0, extra_args: tuple[str, ...] = ()) -> ServerProcess:
    """Start the server on 127.0.0.1 with a free port and wait until /healthz answers."""
    cmd = [sys.executable, "-m", "chatglm_rlhf.collect.annotate", "serve", "--db", db_url]
    cmd += ["--host", "127.0.0.1", "--port", "0", *extra_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines, q), daemon=True).start()
    deadline = time.monotonic() + timeout
    url = None
    while url is None and time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if "open http://" in line:
            url = line.split("open ", 1)[1].split()[0].rstrip("/")
    server = ServerProcess(proc, url or "", lines)
    if not url or not _wait_healthy(url, deadline):
        server.stop()
        raise RuntimeError("annotate server did not start:\n" + "\n".join(lines[-30:]))
    return server


def _wait_healthy(url: str, deadline: float) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never via a proxy
    while time.monotonic() < deadline:
        try:
            with opener.open(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False
