"""The systemd unit that brings the daemon and the saved apps back at boot."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pyvm2.errors import UsageError
from pyvm2.paths import Home


def _escape(text: str) -> str:
    """systemd expands %-specifiers in unit values; a literal % is written %%."""
    return text.replace("%", "%%")


def quote(word: str) -> str:
    """One word for an Exec*= or Environment= line: quoted when it holds spaces or quotes."""
    word = _escape(word)
    if word and not any(c in word for c in ' \t"\'\\;'):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Unit:
    name: str
    path: Path
    system: bool
    user: str
    home: str
    pyvm2_home: str
    python: str
    path_env: str

    @classmethod
    def for_current_user(cls, *, system: bool = False) -> Unit:
        return cls.make(system=system)

    @classmethod
    def make(cls, *, system: bool = False, user: str | None = None, home: str | None = None,
             service_name: str | None = None) -> Unit:
        """The unit for this user (a user unit, or a system one with `system`), or, as pm2's
        `startup -u USER --hp HOME`, a system unit that runs pyvm2 as USER with HOME/.pyvm2."""
        import pwd

        if user is not None or home is not None:
            system = True
        if system and os.geteuid() != 0:
            words = " ".join(["sudo env PATH=$PATH pyvm2 startup",
                              *(["-u", user] if user else []), *(["--hp", home] if home else []),
                              *([] if user or home else ["--system"])])
            raise UsageError("a system unit needs root",
                             f"run: {words}" + ("" if user or home else
                                                ", or drop --system for a user unit"))
        if user is not None:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise UsageError(f"no user named {user!r} on this machine",
                                 "give an existing user with -u, or leave -u out") from None
        else:
            pw = pwd.getpwuid(os.getuid())
        if home is not None:
            home = os.path.abspath(os.path.expanduser(home))
        elif user is not None:
            home = pw.pw_dir
        else:
            home = os.environ.get("HOME") or pw.pw_dir
        if user is None and home == (os.environ.get("HOME") or pw.pw_dir):
            pyvm2_home = str(Home.from_env().root)
        else:
            pyvm2_home = os.path.join(home, ".pyvm2")
        if service_name is not None and (not service_name or "/" in service_name
                                         or service_name.startswith(".")):
            raise UsageError(f"--service-name {service_name!r} is not a unit name",
                             "give a plain name such as pyvm2-web (no / and no leading dot)")
        if system:
            name = service_name or f"pyvm2-{pw.pw_name}"
            name = name if name.endswith(".service") else f"{name}.service"
            path = Path("/etc/systemd/system") / name
        else:
            name = service_name or "pyvm2"
            name = name if name.endswith(".service") else f"{name}.service"
            config = Path(os.environ.get("XDG_CONFIG_HOME") or Path(home) / ".config")
            path = config / "systemd" / "user" / name
        return cls(name=name, path=path, system=system, user=pw.pw_name, home=home,
                   pyvm2_home=pyvm2_home, python=sys.executable,
                   path_env=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))

    @property
    def command(self) -> str:
        return f"{quote(self.python)} -m pyvm2"

    def text(self) -> str:
        user = f"User={self.user}\n" if self.system else ""
        target = "multi-user.target" if self.system else "default.target"
        return (
            "[Unit]\n"
            f"Description=pyvm2 process manager ({self.user})\n"
            "After=network.target\n"
            "\n"
            "[Service]\n"
            "Type=forking\n"
            f"{user}"
            f"Environment={quote('HOME=' + self.home)}\n"
            f"Environment={quote('PYVM2_HOME=' + self.pyvm2_home)}\n"
            f"Environment={quote('PATH=' + self.path_env)}\n"
            f"PIDFile={_escape(self.pyvm2_home)}/pyvm2.pid\n"
            f"ExecStart={self.command} resurrect --if-saved\n"
            f"ExecReload={self.command} reloadLogs\n"
            f"ExecStop={self.command} kill\n"
            # apps live in their own sessions: if the daemon dies they keep running and the
            # restarted daemon adopts them, so systemd must not kill them with it
            "KillMode=process\n"
            "Restart=always\n"
            "RestartSec=2\n"
            "LimitNOFILE=65536\n"
            "\n"
            "[Install]\n"
            f"WantedBy={target}\n"
        )

    def _systemctl(self) -> str:
        return "systemctl" if self.system else "systemctl --user"

    def enable_commands(self) -> list[str]:
        cmds = [f"{self._systemctl()} daemon-reload", f"{self._systemctl()} enable {self.name}"]
        if not self.system:
            cmds.append(f"loginctl enable-linger {self.user}   # start at boot, not at login")
        return cmds

    def disable_commands(self) -> list[str]:
        return [f"{self._systemctl()} disable {self.name}", f"{self._systemctl()} daemon-reload"]


def install(unit: Unit) -> Path:
    unit.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unit.path.with_name(unit.path.name + ".tmp")
    tmp.write_text(unit.text())
    os.replace(tmp, unit.path)
    return unit.path


def uninstall(unit: Unit) -> Path | None:
    try:
        unit.path.unlink()
    except FileNotFoundError:
        return None
    return unit.path
