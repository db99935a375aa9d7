"""The load generator's client: keep-alive HTTP/1.1 connections over asyncio streams, and requests encoded ahead."""
from __future__ import annotations

import asyncio
import re

import httpx

from core.bench.workload import Call

VERSION_FIELD = re.compile(rb'"version":\s*"([^"]{1,64})"')


def encode_call(call: Call, url: str) -> bytes:
    """The HTTP/1.1 request of ``call`` as bytes (httpx builds the query string, JSON and multipart bodies)."""
    request = httpx.Request(call.method, url.rstrip("/") + call.path, params=call.params, json=call.json,
                            files=call.files)
    body = request.read()
    target = request.url.raw_path.decode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "connection")
    return f"{call.method} {target} HTTP/1.1\r\n{headers}\r\n".encode() + body


class Connections:
    """Keep-alive HTTP/1.1 connections to one host over asyncio streams: a request is written whole and its
    response read by Content-Length (or chunks). A few lines of asyncio instead of httpx's client, whose
    pool costs ~3 ms of CPU a request (measured at 100 QPS): the generator must not be what is measured."""

    def __init__(self, url: str, keepalive: int = 32):
        parsed = httpx.URL(url)
        self.keepalive = keepalive
        self.host, self.port = parsed.host, parsed.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, data: bytes) -> tuple[int, str | None]:
        """Send one encoded request; its response's status and the ``version`` a JSON body names (None
        when it names none; the body is otherwise dropped). A kept-alive
        connection the server has closed meanwhile (uvicorn closes idle ones after 5 s) is retried once on
        a new connection, as browsers and HTTP clients do."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, data)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                if isinstance(e, asyncio.IncompleteReadError) and e.partial:
                    raise  # the server had started answering: a real error
        return await self._exchange(*await asyncio.open_connection(self.host, self.port), data)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
                        ) -> tuple[int, str | None]:
        try:
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close" or len(self.idle) >= self.keepalive:
            writer.close()
        else:
            self.idle.append((reader, writer))
        found = VERSION_FIELD.search(body) if "json" in headers.get("content-type", "") else None
        return status, found.group(1).decode("latin-1") if found else None

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
