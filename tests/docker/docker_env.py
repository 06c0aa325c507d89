"""A real Docker engine for the tests: a private dockerd (vfs storage, no bridge, no iptables) with
its own data root and socket, a one-node Swarm, and a Debian image with pyvm2 in it, built from
Debian's packages with debootstrap. Everything is torn down at the end, even on failure.

The test modules import the fixtures from here (a conftest.py would share the module name
`conftest` with tests/e2e/conftest.py, which its tests import from)."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
#: Debian packages of the image: Python, and two of pyvm2's compiled dependencies (the others
#: are copied from this machine's installation, as pip installed them).
PACKAGES = ("python3", "python3-psutil", "python3-yaml")
DEBIAN_PROVIDES = {"psutil", "pyyaml"}
#: Run-time dependencies of pyvm2 (pyproject.toml); their own requirements are followed.
REQUIREMENTS = ("typer", "rich", "psutil", "watchdog", "json5", "PyYAML", "croniter")
IMAGE = "pyvm2-test:latest"
BASE_IMAGE = "pyvm2-test-base:latest"
START_TIMEOUT_S = 60
DOCKER_TIMEOUT_S = 300


@dataclass
class Engine:
    root: Path
    env: dict[str, str]

    def docker(self, *args: str, check: bool = True, timeout: float = DOCKER_TIMEOUT_S,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        res = subprocess.run(["docker", *args], env=self.env, capture_output=True,
                             timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {res.returncode}:\n"
                                 f"{res.stdout.decode(errors='replace')}\n"
                                 f"{res.stderr.decode(errors='replace')}")
        return res

    def out(self, *args: str, **kw) -> str:
        return self.docker(*args, **kw).stdout.decode(errors="replace").strip()


def _skip(reason: str) -> None:
    pytest.skip(reason)


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _unmount_under(path: Path) -> None:
    """What the engine left mounted under its folders (after a crash), deepest first."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    inside = [m.split()[1] for m in mounts if len(m.split()) > 1 and
              m.split()[1].startswith(str(path) + "/")]
    for target in sorted(inside, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=30)


@pytest.fixture(scope="session", name="engine")
def engine_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.geteuid() != 0:
        _skip("a Docker engine needs root (CI runs as root)")
    missing = [t for t in ("dockerd", "docker") if shutil.which(t) is None]
    if missing:
        _skip(f"{' and '.join(missing)} not installed (apt-get install docker.io)")
    root = tmp_path_factory.mktemp("dk")
    sock = root / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    env.pop("DOCKER_CONTEXT", None)
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        ["dockerd", "--storage-driver", "vfs", "--iptables=false", "--bridge=none",
         "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "--host", f"unix://{sock}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    eng = Engine(root, env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                tail = (root / "dockerd.log").read_text(errors="replace")[-1500:]
                _skip(f"dockerd could not start here (exit {proc.returncode}): {tail}")
            if eng.docker("version", check=False, timeout=30).returncode == 0:
                break
            if time.monotonic() > deadline:
                _skip(f"dockerd did not answer within {START_TIMEOUT_S}s")
            time.sleep(0.5)
        yield eng
    finally:
        if proc.poll() is None:
            try:
                ids = eng.out("ps", "-aq", check=False, timeout=60).split()
                if ids:
                    eng.docker("rm", "-f", *ids, check=False, timeout=120)
                eng.docker("swarm", "leave", "--force", check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        _stop(proc)
        log.close()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", name="swarm")
def swarm_fixture(engine: Engine) -> Engine:
    res = engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1", check=False, timeout=120)
    if res.returncode != 0:
        _skip("docker swarm init failed here: " + res.stderr.decode(errors="replace")[-500:])
    return engine


# ---- the image --------------------------------------------------------------------------------

def apt_mirror() -> tuple[str, str]:
    """(mirror, suite) of the Debian archive apt is configured with here."""
    entries: list[tuple[str, list[str]]] = []
    sources = Path("/etc/apt/sources.list.d")
    for f in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    entries.append((uri, fields.get("Suites", "").split()))
    for f in [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]:
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^]]*]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    entries.append((m.group(1), [m.group(2)]))
    for uri, suites in entries:
        for suite in suites:
            if "security" not in uri and re.fullmatch(r"[a-z]+", suite):
                return uri.rstrip("/"), suite
    return FALLBACK_MIRROR, SUITE


def _cache_dir() -> Path | None:
    """Where the Debian root file system is kept between local runs; CI builds it fresh."""
    if os.environ.get("CI"):
        return None
    return Path(os.environ.get("PYVM2_TEST_CACHE", Path.home() / ".cache" / "pyvm2-tests"))


def base_rootfs(tmp: Path) -> Path:
    """A tarball of a minimal Debian with Python (debootstrap), cached by its inputs' hash."""
    if shutil.which("debootstrap") is None:
        _skip("debootstrap is not installed (apt-get install debootstrap)")
    mirror, suite = apt_mirror()
    cache = _cache_dir()
    name = rootfs_name()
    if cache is not None and (cache / name).is_file():
        return cache / name
    target = tmp / "rootfs"
    res = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                          suite, str(target), mirror], capture_output=True, timeout=1200)
    if res.returncode != 0:
        _skip(f"debootstrap {suite} from {mirror} failed: "
              + res.stderr.decode(errors="replace")[-800:])
    prune(target)
    out = (cache or tmp) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    subprocess.run(["tar", "-C", str(target), "-cf", str(part), "."], check=True, timeout=600)
    os.replace(part, out)
    _unmount_under(target)
    shutil.rmtree(target, ignore_errors=True)
    return out


def prune(rootfs: Path) -> None:
    """Drop what no test needs (every container of the vfs driver copies the whole image)."""
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                 "var/cache/apt", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)


def rootfs_name() -> str:
    mirror, suite = apt_mirror()
    key = hashlib.sha256(json.dumps([mirror, suite, PACKAGES, "minbase"]).encode()).hexdigest()[:16]
    return f"debian-{suite}-{key}.tar"


def _dists() -> list[md.Distribution]:
    """pyvm2's installed dependencies, except those the image gets from Debian."""
    from packaging.requirements import Requirement

    found: dict[str, md.Distribution] = {}
    todo = list(REQUIREMENTS)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found or key in DEBIAN_PROVIDES:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        found[key] = dist
        for r in dist.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _compiled(dist: md.Distribution) -> bool:
    return any(str(f).endswith(".so") for f in dist.files or [])


def _site(into: Path, image_python: str) -> None:
    """pyvm2 (this checkout) and its dependencies, as one folder for PYTHONPATH. Installed
    distributions are copied from this machine; compiled ones only when this Python is the
    image's (same cache tag), else pip fetches them built for the image's Python."""
    shutil.copytree(ROOT / "pyvm2", into / "pyvm2",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    same_python = sys.implementation.cache_tag == image_python
    fetch = []
    for dist in _dists():
        if _compiled(dist) and not same_python:
            fetch.append(f"{dist.metadata['Name']}=={dist.version}")
            continue
        for f in dist.files or []:
            rel = str(f)
            if rel.startswith(("..", "/")) or "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            src = Path(dist.locate_file(f))
            if src.is_file():
                dst = into / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    if fetch:
        version = image_python.removeprefix("cpython-")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                              "--target", str(into), "--only-binary=:all:",
                              "--implementation", "cp", "--python-version", version,
                              "--platform", f"manylinux2014_{os.uname().machine}", *fetch],
                             capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            _skip(f"cannot get {', '.join(fetch)} for the image's Python: {res.stderr[-500:]}")


DOCKERFILE = """\
FROM {base}
COPY site /opt/pyvm2
COPY bin/ /usr/local/bin/
COPY app /app
ENV PYTHONPATH=/opt/pyvm2 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
"""

LAUNCHER = """\
#!/usr/bin/python3
import sys
from {module} import main
sys.exit(main())
"""


@pytest.fixture(scope="session", name="image")
def image_fixture(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian image with Python, pyvm2 on PYTHONPATH, `pyvm2` and `pyvm2-runtime` on PATH,
    and the repo's examples and test fixtures under /app."""
    tmp = tmp_path_factory.mktemp("img")
    rootfs = base_rootfs(tmp)
    with open(rootfs, "rb") as f:
        engine.docker("import", "-", BASE_IMAGE, input=f.read(), timeout=600)
    ctx = tmp / "ctx"
    image_python = engine.out("run", "--rm", BASE_IMAGE, "python3", "-c",
                              "import sys; print(sys.implementation.cache_tag)", timeout=120)
    _site(ctx / "site", image_python)
    (ctx / "bin").mkdir(parents=True)
    for script, module in (("pyvm2", "pyvm2.cli"), ("pyvm2-runtime", "pyvm2.runtime")):
        path = ctx / "bin" / script
        path.write_text(LAUNCHER.format(module=module))
        path.chmod(0o755)
    app = ctx / "app"
    shutil.copytree(ROOT / "examples", app / "examples")
    shutil.copyfile(ROOT / "ecosystem.example.json", app / "ecosystem.example.json")
    shutil.copytree(ROOT / "tests" / "fixtures", app / "fixtures",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=BASE_IMAGE))
    engine.docker("build", "-q", "-t", IMAGE, str(ctx), timeout=600)
    return IMAGE

