"""Headers every answer carries (the orchestrator's, the redirector's): CORS (tmpnb's options) and framing."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.server import Request


DEFAULT_ALLOW_HEADERS = "Content-Type, Authorization"


@dataclass(frozen=True)
class CorsPolicy:
    """tmpnb's --allow-origin and friends; an empty value sends no header."""

    allow_origin: str = ""
    allow_credentials: bool = False
    allow_methods: str = ""
    allow_headers: str = ""
    expose_headers: str = ""
    max_age: int | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        pairs = [
            (b"Access-Control-Allow-Origin", self.allow_origin),
            (b"Access-Control-Allow-Credentials", "true" if self.allow_credentials else ""),
            (b"Access-Control-Allow-Methods", self.allow_methods),
            (b"Access-Control-Allow-Headers", self.allow_headers or self._default_allow_headers()),
            (b"Access-Control-Expose-Headers", self.expose_headers),
            (b"Access-Control-Max-Age", "" if self.max_age is None else str(self.max_age)),
        ]
        return [(name, value.encode("latin-1")) for name, value in pairs if value]

    def _default_allow_headers(self) -> str:
        """With an origin allowed, what its pages need to call the API: a JSON body
        (`POST /api/spawn`) makes the browser ask first whether Content-Type may be sent, and
        API_AUTH_TOKEN travels in Authorization. Without these the preflight fails and
        --allow-origin alone would not be enough."""
        return DEFAULT_ALLOW_HEADERS if self.allow_origin else ""


def frame_ancestors_header(frame_ancestors: str) -> tuple[bytes, bytes]:
    """The CSP that lets the configured sites embed our pages in an iframe."""
    return (b"Content-Security-Policy", f"frame-ancestors {frame_ancestors}".encode("latin-1"))


class ResponseHeaders:
    """Computed once; stamped on each request as it enters the resource tree."""

    def __init__(self, cors: CorsPolicy, frame_ancestors: str) -> None:
        self._headers = [
            *cors.headers(),
            frame_ancestors_header(frame_ancestors),
            (b"X-Content-Type-Options", b"nosniff"),
        ]

    def apply(self, request: Request) -> None:
        for name, value in self._headers:
            request.setHeader(name, value)
