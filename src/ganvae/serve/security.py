"""The explorer's defences: loopback-only Host names (DNS rebinding), security headers, a clear port error."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re

from ..errors import GanvaeError


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost."""
    h = host.strip().lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h[1:-1] if h.startswith("[") and h.endswith("]") else h).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """The ``Host`` names the app answers when bound to ``host``: loopback names only for a loopback address
    (the bound address itself too, e.g. 127.0.0.2), else None (any: the page is meant to be reached by others)."""
    if not is_loopback(host):
        return None
    names = list(LOOPBACK_NAMES)
    h = host.strip().lower().strip("[]")
    try:
        ip = ipaddress.ip_address(h)
        h = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    except ValueError:
        h = "localhost"
    return names if h in names else names + [h]


def content_security_policy(page: bytes) -> str:
    """Only this server's own script, style and images (plus data:/blob: images the page makes); the page's
    one inline ``<style>`` block by its hash; no inline script, no plugins, not framed, no <base>."""
    styles = [f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
              for m in re.findall(rb"<style[^>]*>(.*?)</style>", page, flags=re.S)]
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src " + " ".join(["'self'", *styles]),
        "img-src 'self' data: blob:", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'",
        "form-action 'self'",
    ])


class SecurityHeaders:
    """Pure ASGI middleware: adds ``headers`` to every HTTP response (keeping any the response set itself)."""

    def __init__(self, app, headers: dict[str, str]):
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", ())}
                message = {**message, "headers": [*message.get("headers", ()),
                                                  *((k, v) for k, v in self.headers if k not in have)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_port(host: str, port: int) -> None:
    """A clear error when the address cannot be bound (port in use, unknown host)."""
    import socket

    if not 0 <= port <= 65535:
        raise GanvaeError(f"--port {port}: expected 0 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise GanvaeError(f"--host {host}: cannot resolve it ({e.strerror or e})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise GanvaeError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); "
                              "choose another --port") from None


def middleware(host: str, page: bytes) -> list:
    """The app's middleware: security headers outermost (so the Host refusal gets them too), then, for a
    loopback ``host``, Starlette's TrustedHostMiddleware allowing only loopback names."""
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    headers = {
        "Content-Security-Policy": content_security_policy(page),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    out = [Middleware(SecurityHeaders, headers=headers)]
    hosts = allowed_hosts(host)
    if hosts is not None:
        out.append(Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False))
    return out
