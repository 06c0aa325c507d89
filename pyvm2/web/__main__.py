"""Run the web server: python -m pyvm2.web --host H --port P [--tls-cert F --tls-key F]."""

from __future__ import annotations

import argparse
import os
import sys

from pyvm2.web.gate import DEFAULT_HOST, DEFAULT_PORT, is_loopback, missing

#: Request heads larger than this are refused (h11's limit on an incomplete event).
MAX_HEAD = 16 * 1024
#: Connections served at once; above, new requests get 503.
MAX_CONNECTIONS = 2000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyvm2.web")
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--allow-remote", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args(argv)
    absent = missing()
    if absent:
        print(f"pyvm2 web: missing {', '.join(absent)}; install with: pip install 'pyvm2[web]'",
              file=sys.stderr)
        return 2
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"pyvm2 web: refusing to listen on {args.host} without --allow-remote",
              file=sys.stderr)
        return 2
    import uvicorn

    from pyvm2.paths import Home
    from pyvm2.web import auth
    from pyvm2.web.app import Web

    home = Home.from_env().root
    token = auth.ensure_token(auth.token_path(home))
    tls = bool(args.tls_cert and args.tls_key)
    web = Web(str(home), token, port=args.port, remote=not is_loopback(args.host), tls=tls)
    scheme = "https" if tls else "http"
    print(f"pyvm2 web listening on {scheme}://{args.host}:{args.port} (pid {os.getpid()})",
          flush=True)
    if not is_loopback(args.host) and not tls:
        print("pyvm2 web: WARNING: listening beyond this machine over plain HTTP; put it behind "
              "TLS (--tls-cert/--tls-key or a proxy)", flush=True)
    config = uvicorn.Config(
        web.asgi(), host=args.host, port=args.port, http="h11", loop="asyncio",
        lifespan="on", access_log=False, proxy_headers=False, server_header=False,
        date_header=True, h11_max_incomplete_event_size=MAX_HEAD,
        limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5, timeout_graceful_shutdown=2,
        ssl_certfile=args.tls_cert if tls else None, ssl_keyfile=args.tls_key if tls else None,
        log_level="warning")
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
