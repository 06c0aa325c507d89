"""The web server's access rules: token file, signed sessions, CSRF tokens, the rate limit,
loopback addresses."""

from __future__ import annotations

import os
import stat

from pyvm2.web import auth
from pyvm2.web.gate import is_loopback


def test_token_file_is_private_and_kept(tmp_path):
    path = tmp_path / "web.token"
    token = auth.ensure_token(path)
    assert len(token) >= 40 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.ensure_token(path) == token
    os.chmod(path, 0o644)
    assert auth.ensure_token(path) == token and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    auth.write_token(path, "new")
    assert auth.ensure_token(path) == "new"


def test_sessions_and_csrf_are_bound_to_the_token():
    g = auth.Guard("secret")
    cookie = g.new_session()
    nonce = g.session_nonce(cookie)
    assert nonce and g.csrf_ok(nonce, g.csrf_for(nonce))
    assert not g.csrf_ok(nonce, None) and not g.csrf_ok(nonce, "0" * 64)
    tampered = cookie[:-1] + ("1" if cookie[-1] == "0" else "0")   # another last character
    assert g.session_nonce(tampered) is None
    assert g.session_nonce("nodot") is None and g.session_nonce("") is None
    other = auth.Guard("rotated")
    assert other.session_nonce(cookie) is None
    assert not other.csrf_ok(nonce, g.csrf_for(nonce))
    assert g.token_ok("secret") and not g.token_ok("secre") and not g.token_ok(None)


def test_wrong_tokens_block_an_address_for_a_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    g = auth.Guard("t")
    for _ in range(auth.MAX_FAILURES - 1):
        g.failed("1.2.3.4")
    assert g.blocked_for("1.2.3.4") == 0
    g.failed("1.2.3.4")
    assert g.blocked_for("1.2.3.4") > 0 and g.blocked_for("5.6.7.8") == 0
    now[0] += auth.WINDOW_S + 1
    assert g.blocked_for("1.2.3.4") == 0


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.com")

