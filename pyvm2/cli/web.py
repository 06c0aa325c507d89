"""`pyvm2 web`: run the web server as the app pyvm2-web, stop it, or replace its token."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from pyvm2 import cli
from pyvm2.cli.quick import _client, print_table
from pyvm2.errors import NotFound, Pyvm2Error, UsageError
from pyvm2.web.gate import DEFAULT_HOST, DEFAULT_PORT, is_loopback, missing

if TYPE_CHECKING:
    import ssl

    from pyvm2.client import Client

NAME = "pyvm2-web"
#: How long `pyvm2 web` waits for the server to answer /healthz.
READY_S = 15.0


def _running(client: Client) -> list[dict]:
    return [p for p in client.call("list") if p.get("name") == NAME]


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                             "give an address of this machine with --host") from None
    return True


def _wait_ready(url: str, context: ssl.SSLContext | None) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2, context=context) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.1)
    return False


def web(
    host: Annotated[str, typer.Option(help="address to listen on")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="port to listen on")] = DEFAULT_PORT,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="allow an address other machines can reach")] = False,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="serve HTTPS with this certificate (PEM)")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="the certificate's private key (PEM)")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="stop the web server")] = False,
    rotate_token: Annotated[bool, typer.Option("--rotate-token", help="replace the access token (ends every session)")] = False,
) -> None:
    import pyvm2.web.auth as auth
    from pyvm2.paths import Home

    home = Home.from_env()
    if stop:
        client = _client()
        try:
            res = client.call("delete", {"targets": [NAME]}, timeout=None)
        except NotFound:
            cli.info("the web server is not running")
            return
        cli.info(f"web server stopped (ids: {res['ids']})")
        return
    absent = missing()
    if absent:
        raise Pyvm2Error(f"the web server needs the `web` extra ({', '.join(absent)} missing)",
                         "install it with: pip install 'pyvm2[web]'")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(f"{host} can be reached from other machines; refusing without --allow-remote",
                         "keep the default 127.0.0.1 (and use an SSH tunnel), or add --allow-remote "
                         "with --tls-cert/--tls-key")
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together", "give both files, or neither")
    if not 0 < port < 65536:
        raise UsageError(f"port {port} is out of range", "give a port between 1 and 65535")
    args = ["-m", "pyvm2.web", "--host", host, "--port", str(port)]
    if allow_remote:
        args.append("--allow-remote")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path:
            path = os.path.abspath(os.path.expanduser(path))
            if not os.path.isfile(path):
                raise UsageError(f"{flag}: {path} is not a file", "give the PEM file's path")
            args += [flag, path]
    home.ensure()
    token_file = auth.token_path(home.root)
    if rotate_token:
        auth.write_token(token_file, auth.new_token())
    token = auth.ensure_token(token_file)

    from pyvm2 import spec as specmod

    client = _client()
    running = _running(client)
    if not running and not _port_free(host, port):
        raise UsageError(f"port {port} on {host} is already in use",
                         "pick another with --port")
    spec = specmod.from_options(
        {"name": NAME, "script": sys.executable, "interpreter": "none", "args": args,
         "cwd": str(home.root), "restart_delay": 1000, "kill_timeout": 5000},
        base_dir=str(home.root), origin="pyvm2 web", base_env=dict(os.environ),
        warn=cli.warn, cli_script=True)
    res = client.call("start", {"apps": [spec.to_dict()], "base_env": dict(os.environ),
                                "from_file": True}, timeout=None)
    if rotate_token and all(a["action"] == "unchanged" for a in res["actions"]):
        res = client.call("restart", {"targets": [NAME]}, timeout=None)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    if ":" in shown:
        shown = f"[{shown}]"
    scheme = "https" if tls_cert else "http"
    base = f"{scheme}://{shown}:{port}"
    context = None
    if tls_cert:
        import ssl  # noqa: F811 (needed at run time here, at type-check time above)

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if not _wait_ready(base.replace("://localhost", "://127.0.0.1"), context):
        procs = _running(client)
        print_table(procs or res["list"])
        raise Pyvm2Error(f"the web server did not answer on {base} within {READY_S:.0f}s",
                         f"see its log: pyvm2 logs {NAME} --nostream")
    print_table([p for p in _running(client)])
    cli.info(f"web server on {base} (token in {token_file})")
    if not is_loopback(host) and not tls_cert:
        cli.warn("plain HTTP beyond this machine: the token can be read on the way; use "
                 "--tls-cert/--tls-key or a TLS proxy")
    print(f"{base}/?token={token}")
