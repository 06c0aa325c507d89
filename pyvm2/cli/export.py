"""`pyvm2 export`: load an ecosystem file, write the target's files, say what did not map."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pyvm2 import cli
from pyvm2.errors import UsageError


def run_export(target: str, file: str, *, image: str | None, env: str | None,
               only: Sequence[str] | None, out: str | None, app_dir: str | None) -> None:
    from pyvm2 import ecosystem
    from pyvm2.export import TARGETS, Options, export

    if target not in TARGETS:
        raise UsageError(f"unknown export target {target!r}", "choose one of: " + ", ".join(TARGETS))
    if app_dir is not None and not app_dir.startswith("/"):
        raise UsageError(f"--app-dir {app_dir!r} is not an absolute path",
                         "give the folder inside the image, for example /app")
    loaded = ecosystem.load(file, env_name=env, only=list(only) if only else None,
                            base_env=dict(os.environ))
    for w in loaded.warnings:
        cli.warn(w)
    user = None
    if target == "systemd" and os.getuid() != 0:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    options = Options(image=image, source_dir=os.path.dirname(loaded.path), app_dir=app_dir,
                      source_name=file, user=user)
    result = export(target, loaded.apps, options)
    if image is None and target != "systemd":
        cli.warn("no --image: each app gets a stock image for its interpreter, which does not "
                 "hold the app's files; build one that does and pass it with --image")
    for note in result.notes:
        cli.warn(note)
    if out is None:
        sep = "---\n" if target == "kubernetes" else "\n"
        sys.stdout.write(result.stdout_text(sep))
        return
    try:
        os.makedirs(out, exist_ok=True)
        for doc in result.documents:
            path = os.path.join(out, doc.filename)
            with open(path, "w", encoding="utf-8") as f:
                f.write(doc.text)
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {e.strerror or e}", "check the folder") from None
    cli.info(f"wrote {len(result.documents)} file(s) to {out}")
