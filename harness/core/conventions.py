"""How an implementation treats padding rows: the conventions of docs/design.md §3.

Kernels in the field disagree. Under ``pad: negative`` (the default) an index
below zero is padding and slot 0 is an ordinary slot; under ``nonpositive``
slot 0 is the null block: every index ``<= 0`` is padding, no live request
holds slot 0 and nobody writes it. Under ``pad_output: zero`` (the default)
padding rows of ``out`` are written as exact zeros; under ``unwritten`` the
kernel leaves them alone and the caller discards them.

An implementation declares its conventions as a ``conventions`` dict
attribute on the callable; the command line and the pytest plugin take the
same as ``--pad`` and ``--pad-output``; a case may pin them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

NEGATIVE = "negative"
NONPOSITIVE = "nonpositive"
PADS = (NEGATIVE, NONPOSITIVE)
ZERO = "zero"
UNWRITTEN = "unwritten"
PAD_OUTPUTS = (ZERO, UNWRITTEN)
NULL_SLOT = 0  # the null block under ``nonpositive``


@dataclass(frozen=True)
class Conventions:
    """The padding conventions one run follows."""

    pad: str = NEGATIVE
    pad_output: str = ZERO

    def __post_init__(self) -> None:
        if self.pad not in PADS:
            raise ValueError(f"pad: must be one of {PADS}, got {self.pad!r}")
        if self.pad_output not in PAD_OUTPUTS:
            raise ValueError(f"pad_output: must be one of {PAD_OUTPUTS}, got {self.pad_output!r}")

    @property
    def null_slot(self) -> bool:
        """Slot 0 is the null block: never live, never written."""
        return self.pad == NONPOSITIVE

    @property
    def is_default(self) -> bool:
        return self == DEFAULT

    def is_padding(self, index: int) -> bool:
        return index <= 0 if self.null_slot else index < 0

    def describe(self) -> str:
        """``pad=nonpositive pad_output=unwritten``, as reports and rerun commands show it."""
        return f"pad={self.pad} pad_output={self.pad_output}"

    def as_options(self) -> list[str]:
        """The command-line options that select these conventions (none for the default)."""
        opts = []
        if self.pad != NEGATIVE:
            opts += ["--pad", self.pad]
        if self.pad_output != ZERO:
            opts += ["--pad-output", self.pad_output]
        return opts

    def as_dict(self) -> dict[str, str]:
        return {"pad": self.pad, "pad_output": self.pad_output}


DEFAULT = Conventions()
KEYS = tuple(f.name for f in fields(Conventions))


def from_mapping(values: Mapping[str, Any], where: str = "conventions") -> Conventions:
    """Conventions from a dict (an implementation's attribute, a case's field),
    with an error that names the unknown key or bad value."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: must be a mapping with keys {KEYS}, got {values!r}")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {list(KEYS)}")
    try:
        return Conventions(**dict(values))
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None


def of_callable(fn: Any) -> Conventions:
    """What a callable declares in its ``conventions`` attribute (the default if none)."""
    declared = getattr(fn, "conventions", None)
    if declared is None:
        return DEFAULT
    if isinstance(declared, Conventions):
        return declared
    return from_mapping(declared, where=f"{getattr(fn, '__name__', fn)}.conventions")


def with_options(base: Conventions, pad: str | None, pad_output: str | None) -> Conventions:
    """``base`` with the command line's ``--pad`` / ``--pad-output`` applied."""
    changes = {k: v for k, v in (("pad", pad), ("pad_output", pad_output)) if v is not None}
    return replace(base, **changes) if changes else base


def plan_slots(
    indices: list[int], pool: int, null_slot: bool, grow: bool = False
) -> tuple[list[int], int]:
    """A case's indices (``-1`` for padding) and pool size, with no live row on
    the null block when ``null_slot``.

    A live row that would have had slot 0 moves to a slot added at the end of
    the pool, so the case keeps its number of live slots and every other row
    its slot. ``grow`` adds that slot even when no row needs it now (a
    CUDA-graph replay may need it later, and the pool is fixed at capture).
    """
    if not null_slot:
        return list(indices), pool
    moved = [pool if i == 0 else i for i in indices]
    needed = grow or moved != list(indices)
    return moved, pool + 1 if needed else pool


def render_indices(indices: list[int], conventions: Conventions) -> list[int]:
    """Indices (``-1`` for padding, no live row on slot 0 under a null slot)
    as ``conventions`` spells them: under ``nonpositive`` the padding rows
    alternate between ``0`` and ``-1``, so both spellings are exercised."""
    if not conventions.null_slot:
        return list(indices)
    out, k = [], 0
    for i in indices:
        if i < 0:
            out.append(NULL_SLOT if k % 2 == 0 else -1)
            k += 1
        else:
            if i == NULL_SLOT:
                raise ValueError("a live row names the null block (slot 0)")
            out.append(i)
    return out
