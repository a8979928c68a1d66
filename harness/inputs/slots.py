"""Which pool slot each batch row names: the ``state_indices`` of a case.

Pure Python and NumPy (no torch): the runner, the fuzzer and outside adapters
ask for a case's slots without building its inputs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from harness.core.conventions import plan_slots
from harness.core.layouts import PAD_SLOT_ID
from harness.core.spec import CaseSpec


def padding_mask(spec: CaseSpec) -> list[bool]:
    """Which rows are padding, per ``SlotSpec.padding``."""
    s, B = spec.slots, spec.B
    if s.padding == "none":
        return [False] * B
    if s.padding == "all":
        return [True] * B
    if s.padding == "alternate":
        return [i % 2 == 1 for i in range(B)]
    if s.padding == "first":
        return [i == 0 for i in range(B)]
    if s.padding == "last":
        return [i == B - 1 for i in range(B)]
    if s.padding == "random":
        draws = np.random.default_rng(s.pad_seed).random(B)
        return [bool(x < s.pad_fraction) for x in draws]
    raise ValueError(f"unknown slots.padding {s.padding!r}")


def live_slots(spec: CaseSpec, n_live: int) -> list[int]:
    """Distinct slots for ``n_live`` rows, per ``SlotSpec.order``."""
    order, N = spec.slots.order, spec.pool
    if n_live > N:
        raise ValueError(f"{n_live} live rows need distinct slots but the pool has {N}")
    if order == "identity":
        return list(range(n_live))
    if order == "reverse":
        return [N - 1 - i for i in range(n_live)]
    if order == "permutation":
        rng = np.random.default_rng(spec.seed % 2**64)
        return [int(x) for x in rng.choice(N, n_live, replace=False)]
    if order == "spread":
        return [i * N // n_live for i in range(n_live)]
    raise ValueError(f"unknown slots.order {order!r}")


def slot_indices(spec: CaseSpec) -> list[int]:
    """The ``state_indices`` of a case: a slot per row, ``PAD_SLOT_ID`` for padding rows.

    Explicit ``slots.indices`` win; otherwise the padding pattern picks the
    padding rows and the order gives the live rows (in row order) distinct
    slots. ``slot0_live`` then moves slot 0 onto the first live row, swapping
    with the row that held it, so the "slot 0 treated as padding" bug shows.
    """
    if spec.slots.indices is not None:
        return [int(i) for i in spec.slots.indices]
    padded = padding_mask(spec)
    live = [i for i in range(spec.B) if not padded[i]]
    slots = live_slots(spec, len(live))
    if spec.slots.slot0_live and slots and slots[0] != 0:
        if 0 in slots:
            j = slots.index(0)
            slots[0], slots[j] = slots[j], slots[0]
        else:
            slots[0] = 0
    result = [PAD_SLOT_ID] * spec.B
    for row, slot in zip(live, slots, strict=True):
        result[row] = slot
    return result


def for_null_slot(spec: CaseSpec, grow: bool = False) -> CaseSpec:
    """``spec`` with no live row on slot 0, for implementations whose slot 0 is
    the null block (docs/design.md §3).

    The row that would have had slot 0 gets a slot added at the end of the
    pool; every other row keeps its slot, so the case keeps its strides,
    pattern and number of live slots. The slots become explicit; padding rows
    stay ``PAD_SLOT_ID`` here and are spelled per implementation when its
    indices are written (:func:`harness.core.conventions.render_indices`).
    """
    planned, pool = plan_slots(slot_indices(spec), spec.pool, null_slot=True, grow=grow)
    slots = replace(spec.slots, indices=tuple(planned))
    return replace(spec, pool=pool, slots=slots)
