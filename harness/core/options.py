"""The options the two faces share, defined once.

``gdn-harness run`` (argparse) and the pytest plugin (``parser.addoption``)
build their common options from the specs below, so a flag means the same
thing, takes the same metavar and says the same help in both. The words are
fixed: an "impl name" is any string that names an implementation (a built-in,
an installed name, ``module:function`` or ``path/to/file.py:function``);
metavars are IMPL, EXPR, TIER, DIR, NAME and K/N everywhere.

Where pytest already owns a flag (``-k``, ``-x``) the plugin uses pytest's,
and where a bare name would be too general for a pytest session
(``--shard``) the plugin's flag carries a ``gdn-`` prefix.

Imports nothing heavy: ``gdn-harness --help`` and every pytest session in a
venv with the plugin installed read this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.core.conventions import PAD_OUTPUTS, PADS
from harness.core.tiers import TIERS

T = TypeVar("T")

IMPL_HELP = (
    "packed, baseline, oracle, a name from 'gdn-harness impls', module:function "
    "or path/to/file.py:function"
)

TIER_CHOICES = f"case tier to select, repeatable: {', '.join(TIERS)} or all"


@dataclass(frozen=True)
class Shard:
    """Shard K of N: every Nth case of the selection, starting at the Kth.

    The selection's order is the files' order, so every machine of a CI
    matrix computes the same partition; the N shards are disjoint and
    together are exactly the unsharded selection. Taking every Nth case
    (rather than a contiguous block) spreads a file's big cases over the
    shards.
    """

    index: int  # K, from 1
    count: int  # N

    def pick(self, items: Sequence[T]) -> list[T]:
        return list(items[self.index - 1 :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 <= K <= N; argparse and pytest report the error."""
    k, sep, n = text.partition("/")
    try:
        shard = Shard(int(k), int(n)) if sep else None
    except ValueError:
        shard = None
    if shard is None or not 1 <= shard.index <= shard.count:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (got {text!r})")
    return shard


@dataclass(frozen=True)
class Option:
    """One option of both faces: argparse keywords plus the pytest spelling."""

    flags: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    default: Any = None
    action: str | None = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    pytest_flags: tuple[str, ...] | None = None  # None: the same flags; (): CLI only
    pytest_overrides: dict[str, Any] = field(default_factory=dict)  # the plugin's own default

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"dest": self.dest, "help": self.help}
        for key in ("metavar", "default", "action", "choices", "type"):
            value = getattr(self, key)
            if value is not None:
                kw[key] = value
        return kw


OPTIONS: dict[str, Option] = {
    o.dest: o
    for o in (
        Option(
            ("--impl",),
            "impl",
            f"impl name of the implementation under test: {IMPL_HELP} (default: packed)",
            metavar="IMPL",
            default="packed",
        ),
        Option(
            ("--baseline",),
            "baseline",
            "impl name of the baseline every implementation is also compared with, "
            "or 'none' to skip it (default: baseline)",
            metavar="IMPL",
            default="baseline",
        ),
        Option(
            ("-k",),
            "keyword",
            "select cases whose id matches EXPR: substrings combined with and, or, "
            "not and parentheses, as pytest's -k",
            metavar="EXPR",
            pytest_flags=(),  # pytest's own -k selects the same way
        ),
        Option(
            ("--tier",),
            "tier",
            f"{TIER_CHOICES} (default: the tiers this machine can run; asking for a tier "
            "it cannot run is an error)",
            metavar="TIER",
            action="append",
            choices=(*TIERS, "all"),
            pytest_overrides={
                "help": f"{TIER_CHOICES} (default: all; cases of a tier this machine "
                "cannot run are skipped)"
            },
        ),
        Option(
            ("--shard",),
            "shard",
            "keep shard K of N of the selection: every Nth selected case from the Kth, "
            "so that N machines share one run",
            metavar="K/N",
            type=parse_shard,
            pytest_flags=("--gdn-shard",),
        ),
        Option(
            ("--pad",),
            "pad",
            "padding convention of the implementation under test, for a callable that "
            "cannot declare it: negative (index < 0 is padding, slot 0 is live) or "
            "nonpositive (index <= 0 is padding, slot 0 is the null block) "
            "(default: what the implementation declares, else negative)",
            choices=PADS,
        ),
        Option(
            ("--pad-output",),
            "pad_output",
            "what the implementation under test writes to padding rows of out: zero, or "
            "unwritten (left as they were) (default: what it declares, else zero)",
            choices=PAD_OUTPUTS,
        ),
        Option(
            ("--check-device",),
            "check_device",
            "where the float64 oracle and the per-element check run: cpu, cuda or auto "
            "(default: auto, the run's GPU when CuPy can use it)",
            metavar="DEVICE",
        ),
        Option(
            ("--report-dir",),
            "report_dir",
            "parent folder of run reports (default: reports)",
            metavar="DIR",
            default="reports",
            pytest_overrides={
                "default": None,
                "help": "write a run report under DIR (default: no report)",
            },
        ),
        Option(
            ("--run-name",),
            "run_name",
            "report subfolder under the report folder (default: run-<timestamp>)",
            metavar="NAME",
        ),
    )
}

SHARED = tuple(OPTIONS)


def add_to_argparse(
    parser: argparse.ArgumentParser | Any, *names: str, helps: Mapping[str, str] | None = None
) -> None:
    """Add the named shared options to an argparse parser or group; ``helps``
    replaces the help of an option whose default differs in one command."""
    for name in names:
        opt = OPTIONS[name]
        kw = opt.kwargs()
        if helps and name in helps:
            kw["help"] = helps[name]
        parser.add_argument(*opt.flags, **kw)


def add_to_pytest(group: Any, *names: str) -> None:
    """Add the named shared options to a pytest option group (those pytest has not got)."""
    for name in names:
        opt = OPTIONS[name]
        flags = opt.flags if opt.pytest_flags is None else opt.pytest_flags
        if not flags:
            continue
        group.addoption(*flags, **{**opt.kwargs(), **opt.pytest_overrides})


def wanted_tiers(values: Sequence[str] | None, default: set[str]) -> set[str]:
    """The tiers a ``--tier`` list asks for (``all`` is every tier; none: ``default``)."""
    if not values:
        return set(default)
    return set(TIERS) if "all" in values else set(values)
