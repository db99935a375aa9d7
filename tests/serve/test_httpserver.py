"""The HTTP server under the service: uvicorn with a header deadline and size cap, and its limits."""
from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest

from core.serve.api import create_app
from core.serve.httpserver import HeaderDeadline, ServerLimits, uvicorn_config
from tests.serve import test_faults_client
from tests.serve.test_faults_client import loaded

cache = test_faults_client.cache  # its fixture: a published synthetic:60:0 version (two_tower)


@pytest.mark.faults  # issue 20, as in test_faults_client.py
def test_a_connection_that_never_finishes_its_headers_is_closed(cache):
    import uvicorn

    service = loaded(cache)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limits = ServerLimits(header_timeout_s=0.5)
    server = uvicorn.Server(uvicorn_config(create_app(service, start=False), "127.0.0.1", port, limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started:
            assert time.time() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        held = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            held.append(sock)
        silent = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
        held.append(silent)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for sock in held:
            sock.settimeout(5 * limits.header_timeout_s)
            reply = b""
            while chunk := sock.recv(4096):  # the server closes it: recv returns b"" (a timeout here fails)
                reply += chunk
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
            sock.close()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        with socket.create_connection(("127.0.0.1", port)) as huge:  # headers without end, quickly
            huge.settimeout(5)
            try:
                for i in range(200):
                    huge.sendall(b"GET /healthz HTTP/1.1\r\n" if i == 0 else b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000))
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while we were still sending: what it should do
            try:
                assert huge.recv(4096).startswith(b"HTTP/1.1 431")
            except ConnectionResetError:
                pass  # closed with our unread bytes in its buffer: a reset may overtake the 431 (held: a timeout)
        with socket.create_connection(("127.0.0.1", port)) as piped:  # a body over the header cap is not headers
            body = b'{"text": "' + b"x" * 100_000 + b'"}'
            piped.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"POST /search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body) + b"GET /healthz HTTP/1.1\r\n")
            piped.settimeout(5)
            replies = b""
            while chunk := piped.recv(65536):
                replies += chunk
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)  # a response follows the last body directly
            assert statuses[:2] == [b"200", b"422"], statuses  # the third, never finished, may get its 408
    finally:
        server.should_exit = True
        thread.join(10)


def test_uvicorn_config_carries_the_limits():
    assert ServerLimits() == ServerLimits(limit_concurrency=2048, timeout_keep_alive_s=5, header_timeout_s=5.0,
                                          max_header_bytes=64 * 1024, graceful_shutdown_s=10)
    limits = ServerLimits(limit_concurrency=7, timeout_keep_alive_s=3, header_timeout_s=0.25, max_header_bytes=1024,
                          graceful_shutdown_s=2)
    config = uvicorn_config(object(), "127.0.0.1", 8123, limits, log_level="warning")
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 8123, "warning")
    assert (config.limit_concurrency, config.timeout_keep_alive, config.timeout_graceful_shutdown) == (7, 3, 2)
    assert issubclass(config.http, HeaderDeadline)
    assert (config.http.header_timeout_s, config.http.max_header_bytes) == (0.25, 1024)
