"""The HTTP server under the service: uvicorn with a deadline and a size cap on request headers, and the
connection limits ``python -m core serve`` runs with.

uvicorn (0.54) has no header timeout: its keep-alive timer starts only after a response, so a connection
that never finishes its first request's headers is held forever (1,500 of them were all still held after
12 s). :class:`HeaderDeadline` is its httptools protocol with that timer added.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class ServerLimits:
    # A request arriving while this many connections are open (idle ones included) or requests are in flight
    # is answered 503 by uvicorn. The load test holds 32 kept-alive connections at 100 QPS and a proxy's pool a
    # few hundred; a connection costs ~10 KB, so 2,048 of them ~20 MB. Held connections up to it leave the
    # service answering; beyond it, new requests get 503 until the header deadline frees the held ones.
    limit_concurrency: int = 2048
    # A kept-alive connection is closed this long after its last response with nothing new (uvicorn's default).
    timeout_keep_alive_s: int = 5
    # A connection whose request headers are not all in this long after its first byte (or after it opened,
    # for the first request) gets 408 and is closed. A client sends its headers in one packet: 5 s is ample
    # on a slow link, and bounds how long a connection can be held without sending a request.
    header_timeout_s: float = 5.0
    # Request headers beyond this many bytes: 431 and closed (httptools itself accepts any size).
    max_header_bytes: int = 64 * 1024
    # On SIGTERM, requests still running this long after are cancelled (uvicorn otherwise waits for them).
    graceful_shutdown_s: int = 10


def _refusal(status: int, reason: bytes) -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: a request's headers must all arrive within ``header_timeout_s``
    of its first byte (or of the connection opening) and within ``max_header_bytes``, else 408 / 431 and the
    connection is closed. Class attributes: :func:`protocol` makes a subclass with the values of a
    :class:`ServerLimits`."""
    header_timeout_s: float = ServerLimits.header_timeout_s
    max_header_bytes: int = ServerLimits.max_header_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._head_ended = False  # whether some request's headers ended within the chunk being parsed
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        in_head, self._head_ended = self._head_timer is not None, False
        super().data_received(data)
        # Only a chunk in which no headers ended went wholly to unfinished headers. One in which some ended
        # also held their bodies, and perhaps the start of a pipelined request's headers: those few bytes go
        # uncounted, so the cap holds within one chunk.
        if in_head and self._head_timer is not None and not self._head_ended:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, b"Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._head_ended = True
        self._disarm()
        super().on_headers_complete()

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:  # a pipelined request is being answered
            self.cycle.keep_alive = False  # close once it is out
            return
        self._refuse(408, b"Request Timeout")

    def _refuse(self, status: int, reason: bytes) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_refusal(status, reason))
            self.transport.close()


def protocol(limits: ServerLimits) -> type[HeaderDeadline]:
    """:class:`HeaderDeadline` with ``limits``' header timeout and size cap."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": limits.header_timeout_s,
                                                      "max_header_bytes": limits.max_header_bytes})


def uvicorn_config(app, host: str, port: int, limits: ServerLimits = ServerLimits(), **options) -> uvicorn.Config:
    """uvicorn's config for ``app`` on ``host:port`` with ``limits`` (``options``: more uvicorn.Config ones)."""
    return uvicorn.Config(app, host=host, port=port, http=protocol(limits), limit_concurrency=limits.limit_concurrency,
                          timeout_keep_alive=limits.timeout_keep_alive_s,
                          timeout_graceful_shutdown=limits.graceful_shutdown_s, **options)
