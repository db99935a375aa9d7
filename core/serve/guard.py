"""The service's ASGI middleware: the request size limit, per-route counts and timings, and the nosniff header."""
from __future__ import annotations

import logging
import time

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.routing import Match

from core.serve.service import Service

log = logging.getLogger(__name__)


class Guard:
    """ASGI middleware: refuses a body over the service's size limit with 413 (by its Content-Length, or
    as it streams in), counts and times every request per route, and marks responses ``nosniff``.
    ``router``: the app's, to name the route of a request refused before it reaches it."""

    def __init__(self, app, service: Service, router=None):
        self.app, self.service, self.router = app, service, router

    def _route_path(self, scope) -> str:
        """The path template of the route ``scope`` is for (as the router would match it), or 'unmatched'."""
        partial = None
        for route in getattr(self.router, "routes", ()):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "unmatched")
            if match == Match.PARTIAL and partial is None:
                partial = getattr(route, "path", None)
        return partial or "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        limit = self.service.cfg.max_upload_bytes + 64 * 1024  # the photo plus the form's other fields
        status = 500
        started = False

        async def reply(code: int, detail: str) -> None:
            await JSONResponse({"detail": detail}, code)(scope, receive, send_)

        async def send_(message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options",
                                                                                 b"nosniff")]}
            await send(message)

        received = 0

        async def receive_():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"upload over the limit of {self.service.cfg.max_upload_bytes} bytes")
            return message

        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        try:
            if int(length or 0) > limit:
                await reply(413, f"upload over the limit of {self.service.cfg.max_upload_bytes} bytes")
            else:
                await self.app(scope, receive_, send_)
        except Exception as e:  # never let one request take the process down
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await reply(500, f"internal error: {e.__class__.__name__}")
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or self._route_path(scope)
            m = self.service.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            if status >= 400:
                m.errors.labels(endpoint, "client" if status < 500 else "server").inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - t)
