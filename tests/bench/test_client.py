"""The load generator's client: requests encoded ahead, sent over kept-alive connections."""
from __future__ import annotations

import asyncio

from core.bench.client import Connections, encode_call
from core.bench.workload import Call
from core.bench.process import NULL_RESPONSE


def test_calls_are_encoded_as_whole_http_requests():
    get = encode_call(Call("s", "GET", "/products", params={"q": "a b", "k": 3}), "http://h:1/")
    assert get == b"GET /products?q=a+b&k=3 HTTP/1.1\r\nhost: h:1\r\n\r\n"
    post = encode_call(Call("t", "POST", "/search/text", json={"text": "dress"}), "http://h:1")
    assert post == (b"POST /search/text HTTP/1.1\r\nhost: h:1\r\ncontent-length: 16\r\n"
                    b"content-type: application/json\r\n\r\n" b'{"text":"dress"}')


def test_connections_read_status_and_version_and_reuse_a_kept_alive_connection():
    accepted = []

    async def answer(reader, writer):
        accepted.append(1)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(NULL_RESPONSE)  # 200, {"ready":true,"version":"null",...}
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def run():
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            connections = Connections(f"http://127.0.0.1:{port}")
            request = encode_call(Call("h", "GET", "/healthz"), f"http://127.0.0.1:{port}")
            got = [await connections.request(request) for _ in range(3)]
            connections.close()
        return got

    assert asyncio.run(run()) == [(200, "null")] * 3
    assert accepted == [1]  # one after another: one connection, kept alive
