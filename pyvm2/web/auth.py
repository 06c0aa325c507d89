"""Who may use the web server: the access token, signed session cookies, CSRF tokens and the
rate limit on wrong tokens."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from pathlib import Path

COOKIE = "pyvm2_session"
CSRF_HEADER = "x-csrf-token"
#: Wrong tokens allowed from one address per window before it is refused for the window.
MAX_FAILURES = 10
WINDOW_S = 60.0
#: Addresses remembered at most (the oldest are forgotten first).
MAX_TRACKED = 10000


def token_path(home: Path) -> Path:
    return home / "web.token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token(path: Path, token: str) -> None:
    """Replace the token file atomically; it is readable by its owner only."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
        if token:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return token
    except FileNotFoundError:
        pass
    token = new_token()
    write_token(path, token)
    return token


class Guard:
    """Checks credentials against the token; sessions and CSRF tokens are derived from it, so
    a new token ends every session."""

    def __init__(self, token: str) -> None:
        self._key = token.encode()
        self._failures: dict[str, deque[float]] = {}

    def _sign(self, purpose: str, nonce: str) -> str:
        return hmac.new(self._key, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._key)

    def new_session(self) -> str:
        nonce = secrets.token_hex(16)
        return f"{nonce}.{self._sign('session', nonce)}"

    def session_nonce(self, cookie: str | None) -> str | None:
        """The session's nonce if the cookie is genuine."""
        if not cookie or "." not in cookie or len(cookie) > 200:
            return None
        nonce, _, mac = cookie.partition(".")
        return nonce if hmac.compare_digest(mac.encode(), self._sign("session", nonce).encode()) else None

    def csrf_for(self, nonce: str) -> str:
        return self._sign("csrf", nonce)

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf_for(nonce).encode())

    # ---- rate limit ------------------------------------------------------------------------
    def blocked_for(self, addr: str) -> float:
        """Seconds this address must wait, or 0."""
        seen = self._failures.get(addr)
        if not seen:
            return 0.0
        now = time.monotonic()
        while seen and now - seen[0] > WINDOW_S:
            seen.popleft()
        if not seen:
            del self._failures[addr]
            return 0.0
        return WINDOW_S - (now - seen[0]) if len(seen) >= MAX_FAILURES else 0.0

    def failed(self, addr: str) -> None:
        seen = self._failures.get(addr)
        if seen is None:
            if len(self._failures) >= MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            seen = self._failures[addr] = deque(maxlen=MAX_FAILURES)
        seen.append(time.monotonic())
