"""A service process run for a benchmark: its command, waiting until it is ready, stopping it, pinning it to
cores, its CPU time; and the null service that stands in for it to measure the floor.

``python -m core.bench.process null PORT`` runs the null service."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core.config import PROJECT_ROOT


# ---------------------------------------------------------------- a service started here

def server_command(catalog: str | None, port: int) -> list[str]:
    """The command that starts the service on 127.0.0.1:``port`` (run from the project root)."""
    return ([sys.executable, "-m", "core", "serve", "--port", str(port), "--host", "127.0.0.1"]
            + (["--catalog", catalog] if catalog else []))


def start_logged(command: list[str], cpu: int | None = None) -> tuple[subprocess.Popen, Path]:
    """``command`` started from the project root, its output to a new temporary log file; pinned to ``cpu``
    if given. Returns the process and its log."""
    saved = os.sched_getaffinity(0)
    fd, name = tempfile.mkstemp(prefix="atelier-serve-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        # The child inherits this thread's mask at fork, so every thread it ever starts is pinned.
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        try:
            proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            os.sched_setaffinity(0, saved)
    return proc, Path(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        return path.read_bytes()[-n_bytes:].decode("utf-8", "replace")
    except OSError:
        return "(log unreadable)"


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path | None, timeout_s: float,
               interval_s: float = 0.5, path: str = "/readyz") -> dict:
    """Poll GET ``path`` (the service's /readyz; a Streamlit app's is /_stcore/health) every ``interval_s`` until it
    answers 200; its JSON (or {}). Raises RuntimeError if ``proc`` exits first, TimeoutError after ``timeout_s``,
    both with the end of the service's log."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {proc.returncode} before it was ready "
                                   f"(command: {' '.join(proc.args)}); its log {log} ends:\n{log_tail(log)}")
            try:
                response = client.get(path)
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        body = {}
                    return body if isinstance(body, dict) else {}
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                tail = f"; its log {log} ends:\n{log_tail(log)}" if log else ""
                raise TimeoutError(f"{url}{path} did not answer 200 within {timeout_s:.0f} s{tail}")
            time.sleep(interval_s)


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, 10 s to exit, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (sched_setaffinity(pid) moves only the thread whose id is ``pid``)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, all threads (from /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


# ---------------------------------------------------------------- the floor: a service that does nothing

NULL_BODY = b'{"ready":true,"version":"null","results":[]}'
NULL_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                 % len(NULL_BODY) + NULL_BODY)


async def _null_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every request on a kept-alive connection, read whole (headers and body), answered at once with the
    same small JSON body."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            writer.write(NULL_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        writer.close()


async def null_service(port: int) -> None:
    """A service that answers every request with 200 and no work, on 127.0.0.1:``port``, forever: loaded
    with the same schedule, it measures the latency the generator, the loopback and an event loop add by
    themselves (``bench serve --floor``)."""
    server = await asyncio.start_server(_null_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def null_command(_catalog: str | None, port: int) -> list[str]:
    return [sys.executable, "-m", "core.bench.process", "null", str(port)]


if __name__ == "__main__":  # python -m core.bench.process null PORT: the null service (see serve_and_load's floor)
    if sys.argv[1:2] != ["null"] or len(sys.argv) != 3:
        sys.exit("usage: python -m core.bench.process null PORT")
    asyncio.run(null_service(int(sys.argv[2])))
