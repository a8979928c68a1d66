"""Fuzzing: draw cases with Hypothesis, shrink the first failure, save it as YAML.

``strategies`` draws valid cases across the whole case space, ``profiles``
holds the Hypothesis settings of CI and nightly runs, ``command`` is the
fuzz loop and the ``gdn-harness fuzz`` subcommand (``register``).

The names below are imported on first use, so that importing this package
(for the profiles, say) does not import the runner and torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "FuzzOptions": "command",
    "FuzzReport": "command",
    "Fuzzer": "command",
    "cmd_fuzz": "command",
    "fuzz": "command",
    "impl_file_part": "command",
    "register": "command",
    "TIER_LIMITS": "strategies",
    "case_specs": "strategies",
    "describe": "strategies",
    "get_settings": "profiles",
    "load_profile": "profiles",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
