"""What `pyvm2 web` checks before a server starts: the `web` extra is installed, the address is
loopback; the defaults. Standard library only: the CLI imports it."""


#: What the web server needs beyond pyvm2 itself (the `web` extra).
REQUIRES = ("starlette", "uvicorn", "prometheus_client")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9615


def missing() -> list[str]:
    """The modules of the `web` extra that are not installed."""
    from importlib.util import find_spec

    absent = []
    for m in REQUIRES:
        try:
            if find_spec(m) is None:
                absent.append(m)
        except (ImportError, ValueError):  # a module blocked in sys.modules
            absent.append(m)
    return absent


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
