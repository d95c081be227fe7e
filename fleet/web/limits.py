"""Request body limits, enforced before any other work.

FastAPI reads a request's whole body before it resolves dependencies, so without a
limit an anonymous client can make the server hold any number of bytes before the
401. `BodyLimit` runs outside the app: a declared `Content-Length` over the route's
limit is refused at once, without reading a byte of the body; a chunked body is
counted as it streams and refused the moment it passes the limit. A route allowed
more than the default (import) grants it only to a caller with a live bearer token,
looked up before a byte of the body is read; anyone else gets the default limit, so
an anonymous client cannot make the server buffer an import-sized body. Either way the
answer is 413 and the app never sees more than the limit. Whatever the client still
sends is read and dropped by the server a buffer at a time (memory stays flat), and
the connection is not cut: a client closing on the 413 (curl, browsers) gets to read
it instead of a reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.web import errors


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The largest body, in bytes, for routes under each path prefix (longest match
    wins) and for every other route."""

    default_bytes: int
    by_prefix: tuple[tuple[str, int], ...] = ()

    def for_path(self, path: str) -> int:
        best: tuple[int, int] | None = None  # (prefix length, limit)
        for prefix, limit in self.by_prefix:
            if (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), limit)
        return self.default_bytes if best is None else best[1]


class BodyLimit:
    """ASGI middleware refusing bodies over their route's limit with 413."""

    def __init__(
        self, app: ASGIApp, *, limits: BodyLimits, token_is_live: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.limits = limits
        self.token_is_live = token_is_live  # blocking (a database look-up)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_bytes = self.limits.for_path(scope["path"])
        detail = f"request body too large: at most {limit_bytes:,} bytes are accepted here"
        if limit_bytes > self.limits.default_bytes and not await self._logged_in(scope):
            detail = (
                f"request body too large: at most {self.limits.default_bytes:,} bytes without "
                f"a valid login ({limit_bytes:,} with one)"
            )
            limit_bytes = self.limits.default_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit_bytes:
            await _refuse(scope, receive, send, detail)
            return

        received_bytes = 0
        refused = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received_bytes, refused
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > limit_bytes:
                    if not response_started:
                        refused = True
                        await _refuse(scope, receive, send, detail)
                    # The app sees a client that went away and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 is the answer; the app's reply to a cut body is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _logged_in(self, scope: Scope) -> bool:
        token = _bearer_token(scope)
        return token is not None and await run_in_threadpool(self.token_is_live, token)


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we run
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, detail: str) -> None:
    response = errors.problem(413, detail)
    await response(scope, receive, send)
