"""``gdn-harness bench``: how fast each implementation is, measured honestly.

``register`` adds the subcommand to a parser (``harness.cli`` calls it);
``harness.bench.command`` says how the method is cut into modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def __getattr__(name: str) -> Any:
    if name == "register":
        # Resolved on first use, not at import: `python -m harness.bench.command`
        # imports this package first, and runpy warns when the module it is about
        # to run as __main__ is already imported.
        from harness.bench.command import register

        return register
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
