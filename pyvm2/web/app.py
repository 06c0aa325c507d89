"""The HTTP side: routes of the JSON API, the page and /metrics, behind the token check, the
CSRF check, size limits and security headers."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pyvm2.errors import DaemonError, NotFound, Pyvm2Error
from pyvm2.tail import tail_lines
from pyvm2.web import auth, metrics
from pyvm2.web.link import Link

#: The app name `pyvm2 web` runs under; "all" from the web leaves it alone.
SELF_NAME = "pyvm2-web"
ACTIONS = {"start": "start", "stop": "stop", "restart": "restart", "reload": "restart",
           "delete": "delete", "reset": "reset"}
#: Request bodies are never needed: anything larger than this is refused.
MAX_BODY = 16 * 1024
#: The request line's target and headers together may not be larger than this.
MAX_HEAD = 16 * 1024
MAX_LOG_LINES = 5000
#: At most this much of the end of a log file is read for its last lines.
MAX_LOG_READ = 4 * 1024 * 1024
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def _static(name: str) -> bytes:
    return resources.files("pyvm2.web").joinpath("static").joinpath(name).read_bytes()


class Forbidden(Pyvm2Error):
    """Authenticated, but not in a way that allows this request."""


def error(status: int, message: str, hint: str | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "hint": hint}}, status, headers=headers)


class Headers:
    """Security headers on every response; heads over MAX_HEAD and bodies over MAX_BODY are
    refused before anything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > MAX_HEAD:
            await error(431, f"request headers are limited to {MAX_HEAD} bytes")(
                scope, receive, send_with_headers)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY):
                await error(413, f"request bodies are limited to {MAX_BODY} bytes")(
                    scope, receive, send_with_headers)
                return
            if name == b"transfer-encoding":
                await error(413, "chunked request bodies are not accepted")(
                    scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


class Web:
    def __init__(self, home: str, token: str, *, port: int = 0, remote: bool = False,
                 tls: bool = False) -> None:
        self.home = home
        self.guard = auth.Guard(token)
        # cookies do not tell ports apart: servers of several homes on one host keep theirs apart
        self.cookie = f"{auth.COOKIE}_{port}" if port else auth.COOKIE
        self.link = Link(os.path.join(home, "pyvm2.sock"))
        self.remote_plain = remote and not tls
        self.secure_cookie = tls

    # ---- access ----------------------------------------------------------------------------
    def _addr(self, request: Request) -> str:
        return request.client.host if request.client else "?"

    def identify(self, request: Request) -> tuple[str | None, bool]:
        """(how the request is authenticated: "bearer", a session nonce, or None; whether it
        presented wrong credentials)."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer" and self.guard.token_ok(value.strip()):
                return "bearer", False
            return None, True
        cookie = request.cookies.get(self.cookie)
        if cookie is not None:
            nonce = self.guard.session_nonce(cookie)
            return (nonce, False) if nonce else (None, True)
        return None, False

    def protected(self, handler: Callable[[Request, str], Awaitable[Response]], *,
                  write: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            addr = self._addr(request)
            wait = self.guard.blocked_for(addr)
            if wait:
                return error(429, "too many wrong tokens from this address",
                             f"try again in {wait:.0f}s", {"retry-after": str(int(wait) + 1)})
            who, wrong = self.identify(request)
            if who is None:
                if wrong:
                    self.guard.failed(addr)
                return error(401, "a token is needed",
                             "send Authorization: Bearer <token> (the token is in "
                             "$PYVM2_HOME/web.token), or open the URL pyvm2 web printed",
                             {"www-authenticate": 'Bearer realm="pyvm2"'})
            if write and who != "bearer" and \
                    not self.guard.csrf_ok(who, request.headers.get(auth.CSRF_HEADER)):
                return error(403, "missing or wrong CSRF token",
                             "browsers send the X-CSRF-Token header the page gives them; "
                             "scripts use Authorization: Bearer <token>")
            try:
                return await handler(request, who)
            except NotFound as e:
                return error(404, e.message, e.hint)
            except Forbidden as e:
                return error(403, e.message, e.hint)
            except DaemonError as e:
                return error(503, e.message, e.hint or "start it with: pyvm2 resurrect")
            except Pyvm2Error as e:
                return error(409, e.message, e.hint)
        return endpoint

    # ---- the page ---------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        addr = self._addr(request)
        given = request.query_params.get("token")
        if given is not None:
            wait = self.guard.blocked_for(addr)
            if wait:
                return error(429, "too many wrong tokens from this address",
                             f"try again in {wait:.0f}s", {"retry-after": str(int(wait) + 1)})
            if not self.guard.token_ok(given):
                self.guard.failed(addr)
                return self._login(401, "That token is not right.")
            response = RedirectResponse("/", 303)
            response.set_cookie(self.cookie, self.guard.new_session(), httponly=True,
                                samesite="strict", secure=self.secure_cookie, path="/")
            return response
        who, wrong = self.identify(request)
        if who is None:
            if wrong:
                self.guard.failed(addr)
            return self._login(401, "")
        csrf = self.guard.csrf_for(who) if who != "bearer" else ""
        page = _static("index.html").decode()
        page = page.replace("{{csrf}}", csrf).replace(
            "{{remote}}", "plain" if self.remote_plain else "")
        return Response(page, media_type="text/html; charset=utf-8")

    def _login(self, status: int, message: str) -> Response:
        page = _static("login.html").decode().replace("{{message}}", message)
        return Response(page, status, media_type="text/html; charset=utf-8")

    async def static(self, request: Request, _who: str) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return error(404, "no such file")
        return Response(_static(name), media_type=STATIC[name])

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    # ---- the API ----------------------------------------------------------------------------
    async def apps(self, request: Request, who: str) -> Response:
        if request.query_params.get("env") in ("1", "true", "yes"):
            return JSONResponse(await self._with_env(request, who, await self.link.call("list")))
        return JSONResponse(await self.link.shared_list())

    async def _with_env(self, request: Request, who: str, apps: list[dict]) -> list[dict]:
        if request.query_params.get("env") not in ("1", "true", "yes"):
            return apps
        if who != "bearer":
            raise Forbidden("environments are sent only to requests with the token",
                             "use Authorization: Bearer <token>")
        envs = await self.link.call("env", {"targets": [str(a["pm_id"]) for a in apps]}) \
            if apps else {}
        for a in apps:
            a["pm2_env"]["env"] = envs.get(str(a["pm_id"]), {})
        return apps

    async def _resolve(self, target: str) -> list[dict]:
        if target == "all":
            return [a for a in await self.link.call("list") if a.get("name") != SELF_NAME]
        return await self.link.call("describe", {"targets": [target]})

    async def app(self, request: Request, who: str) -> Response:
        apps = await self._resolve(request.path_params["target"])
        return JSONResponse(await self._with_env(request, who, apps))

    async def action(self, request: Request, who: str) -> Response:
        name = request.path_params["action"]
        cmd = ACTIONS.get(name)
        if cmd is None:
            return error(404, f"unknown action {name[:50]!r}",
                         "actions: " + ", ".join(ACTIONS))
        target = request.path_params["target"]
        procs = await self._resolve(target)
        if cmd == "start":  # the page's start leaves running apps alone (pm2's start restarts them)
            procs = [p for p in procs if p.get("pid") in (0, None)]
        ids = [str(p["pm_id"]) for p in procs]
        if not ids:
            return JSONResponse({"action": name, "ids": [], "apps": []})
        reply = await self.link.call(cmd, {"targets": ids})
        affected = {int(i) for i in ids}
        after = [a for a in reply.get("list") or [] if a.get("pm_id") in affected]
        return JSONResponse({"action": name, "ids": sorted(affected), "apps": after})

    async def logs(self, request: Request, who: str) -> Response:
        try:
            lines = int(request.query_params.get("lines", "100"))
        except ValueError:
            return error(400, "lines must be a number")
        lines = max(0, min(lines, MAX_LOG_LINES))
        procs = await self._resolve(request.path_params["target"])
        out = []
        for p in procs:
            env = p.get("pm2_env") or {}
            out.append({"pm_id": p["pm_id"], "name": p["name"],
                        "out": await asyncio.to_thread(_tail, env.get("pm_out_log_path"), lines),
                        "err": await asyncio.to_thread(_tail, env.get("pm_err_log_path"), lines)})
        return JSONResponse({"apps": out})

    async def history(self, request: Request, who: str) -> Response:
        return JSONResponse(await self.link.call(
            "history", {"targets": [request.path_params["target"]]}))

    async def events(self, request: Request, who: str) -> Response:
        logs = {t for t in request.query_params.getlist("logs") if t and len(t) < 200}
        return StreamingResponse(self.link.events(logs), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def session(self, request: Request, who: str) -> Response:
        return JSONResponse({"csrf": self.guard.csrf_for(who) if who != "bearer" else None,
                             "daemon": self.link.up})

    async def metrics(self, request: Request, who: str) -> Response:
        apps: list[dict] = []
        daemon: dict[str, Any] | None = None
        try:
            apps = await self.link.call("list")
            daemon = await self.link.call("ping")
            daemon.update(await asyncio.to_thread(_process_usage, daemon.get("pid")))
        except DaemonError:
            daemon = None
        # formatting a thousand apps takes a while: not on the loop that serves the streams
        body = await asyncio.to_thread(metrics.render, apps, daemon,
                                       {"streams": len(self.link.streams),
                                        "dropped": self.link.dropped_total})
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- assembly ---------------------------------------------------------------------------
    def asgi(self) -> ASGIApp:
        p = self.protected
        routes = [
            Route("/", self.index, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/static/{name}", p(self.static), methods=["GET"]),
            Route("/metrics", p(self.metrics), methods=["GET"]),
            Route("/api/session", p(self.session), methods=["GET"]),
            Route("/api/apps", p(self.apps), methods=["GET"]),
            Route("/api/events", p(self.events), methods=["GET"]),
            Route("/api/apps/{target}", p(self.app), methods=["GET"]),
            Route("/api/apps/{target}/logs", p(self.logs), methods=["GET"]),
            Route("/api/apps/{target}/history", p(self.history), methods=["GET"]),
            Route("/api/apps/{target}/{action}", p(self.action, write=True), methods=["POST"]),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            code = getattr(exc, "status_code", 404)
            return error(code, "not found" if code == 404 else "method not allowed")

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self.link.start()
            try:
                yield
            finally:
                await self.link.stop()

        app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found},
                        lifespan=lifespan)
        return Headers(app)


def _tail(path: str | None, lines: int) -> list[str]:
    if not path or path == os.devnull:
        return []
    return [line.decode("utf-8", errors="replace")
            for line in tail_lines(path, lines, max_bytes=MAX_LOG_READ)]


def _process_usage(pid: int | None) -> dict[str, float]:
    import psutil

    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        return {"cpu_seconds": times.user + times.system, "memory": proc.memory_info().rss}
    except (psutil.Error, TypeError, ValueError):
        return {}
