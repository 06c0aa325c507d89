"""pyvm2 export: AppSpecs to Kubernetes, Compose or systemd files; pure, no daemon involved."""

from __future__ import annotations

from collections.abc import Sequence

from pyvm2.export.common import Document, Export, Options
from pyvm2.spec import AppSpec

TARGETS = ("kubernetes", "compose", "systemd")

__all__ = ["TARGETS", "Document", "Export", "Options", "export"]


def export(target: str, apps: Sequence[AppSpec], options: Options) -> Export:
    """The documents for `target`, and every note about what did not map (also in the files)."""
    if target == "kubernetes":
        from pyvm2.export import kubernetes as mod
    elif target == "compose":
        from pyvm2.export import compose as mod  # type: ignore[no-redef]
    elif target == "systemd":
        from pyvm2.export import systemd as mod  # type: ignore[no-redef]
    else:
        raise ValueError(f"unknown export target {target!r}")
    return mod.export(apps, options)
