"""Rules the schema cannot express, checked on a built ``CaseSpec``.

HV a multiple of H, a pool that holds every live row, explicit slot indices
that are distinct and inside the pool, a pool the index dtype can address,
a valid ``expect`` pattern, overrides only in error cases, finite numbers
and inputs and oracle values that stay finite (``magnitudes``),
inputs (overrides included) that fit the tier's memory, from an estimate
(loading never allocates), and work (steps x state size) the tier affords.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from harness.cases.limits import GIB, INDEX_RANGE, TierLimits
from harness.cases.magnitudes import magnitude_problem
from harness.core.dtypes import nbytes
from harness.core.spec import CaseSpec, SlotSpec

Rule = tuple[str | None, str]  # (dotted field or None for the whole case, message)


def max_live_rows(B: int, slots: SlotSpec) -> int:
    """Upper bound on rows that name a slot; the pool must have at least this many."""
    if slots.indices is not None:
        return sum(i >= 0 for i in slots.indices)
    if slots.padding == "random":
        return 0 if slots.pad_fraction >= 1 else B
    bound = {"none": B, "all": 0, "alternate": (B + 1) // 2, "first": B - 1, "last": B - 1}
    return bound[slots.padding]


def estimate_case_bytes(spec: CaseSpec) -> int:
    """Bytes of the input buffers one case allocates (mixed_qkv, a/b, state pool, out).

    Overrides are applied to a copy of the built inputs and allocate buffers
    of their own: an error case counts the copy and what each override adds.
    """
    base = _input_bytes(spec)
    if not spec.overrides:
        return base
    return 2 * base + sum(override_bytes(spec).values())


def override_bytes(spec: CaseSpec) -> dict[str, int]:
    """Bytes each override of ``spec`` allocates (by key; 0 for views and keywords)."""
    ov = dict(spec.overrides)
    act, width, B, HV = nbytes(spec.act_dtype), spec.qkv_width, spec.B, spec.HV
    out_dtype = nbytes(str(ov.get("out_dtype", spec.act_dtype)))
    param = act if spec.param_dtype == "act" else nbytes(spec.param_dtype)
    sizes = {
        "out_dtype": lambda v: B * HV * spec.V * out_dtype,
        "out_shape": lambda v: math.prod(v) * out_dtype,
        "index_dtype": lambda v: B * nbytes(v),
        "qkv_last_stride": lambda v: B * ((width - 1) * v + 1) * act,
        "a_rows": lambda v: v * HV * act,
        "A_log_stride": lambda v: ((HV - 1) * v + 1) * param,
        "qkv_width_delta": lambda v: B * max(0, width + v) * act,
        "a_device": lambda v: B * HV * act,
    }
    return {k: sizes[k](v) if k in sizes else 0 for k, v in ov.items()}


def _input_bytes(spec: CaseSpec) -> int:
    act = nbytes(spec.act_dtype)
    lay = spec.layout
    qkv = spec.B * (lay.qkv_col_offset + spec.qkv_width + lay.qkv_row_pad) * act
    ab_buffers = 1 if lay.ab_packed else 2
    ab = ab_buffers * spec.B * (2 * spec.HV // ab_buffers + lay.ab_row_pad) * act
    slot = spec.HV * spec.K * spec.V + lay.state_slot_pad
    state = spec.pool * slot * nbytes(spec.state_dtype)
    out = spec.B * spec.HV * spec.V * act
    return qkv + ab + state + out


def semantic_problem(spec: CaseSpec, limits: TierLimits) -> Rule | None:
    """Rules the schema cannot express: (field, message) of the first one broken."""
    if spec.HV % spec.H:
        return "HV", f"must be a multiple of H={spec.H} (got {spec.HV})"
    if spec.values.a_log_hi < spec.values.a_log_lo:
        return "values.a_log_hi", f"must be >= a_log_lo={spec.values.a_log_lo}"
    problem = _indices_problem(spec)
    if problem:
        return problem
    live = max_live_rows(spec.B, spec.slots)
    if spec.slots.indices is None and spec.pool < live:
        what = f"padding '{spec.slots.padding}'"
        return "pool", f"{spec.pool} slots cannot hold up to {live} live rows ({what}, B={spec.B})"
    if spec.expect is not None:
        try:
            re.compile(spec.expect.match)
        except re.error as exc:
            return "expect.error", f"is not a valid regular expression: {exc}"
    return (
        _overrides_problem(spec)
        or magnitude_problem(spec)
        or _memory_problem(spec, limits.memory)
        or _work_problem(spec, limits.work)
        or _index_dtype_problem(spec)
    )


def _index_dtype_problem(spec: CaseSpec) -> Rule | None:
    """After the size limits, so that a huge B or pool is blamed as too big, not on this."""
    _, index_max = INDEX_RANGE[spec.index_dtype]
    if spec.pool - 1 > index_max:
        return "index_dtype", f"cannot index a pool of {spec.pool} slots"
    return None


def _overrides_problem(spec: CaseSpec) -> Rule | None:
    """Overrides make arguments the wrappers must refuse: only error cases have them."""
    if not spec.overrides:
        return None
    if spec.expect is None:
        return "overrides", (
            "need 'expect' (overrides make invalid arguments: say which error the wrappers raise)"
        )
    delta = dict(spec.overrides).get("qkv_width_delta")
    if isinstance(delta, int) and spec.qkv_width + delta < 0:
        width = f"2*H*K + HV*V = {spec.qkv_width}"
        return "overrides.qkv_width_delta", f"makes mixed_qkv narrower than 0 columns ({width})"
    return None


def _indices_problem(spec: CaseSpec) -> Rule | None:
    indices = spec.slots.indices
    if indices is None:
        return None
    if len(indices) != spec.B:
        return "slots.indices", f"must have B={spec.B} entries (got {len(indices)})"
    lo, _ = INDEX_RANGE[spec.index_dtype]
    seen: dict[int, int] = {}
    for row, slot in enumerate(indices):
        where = f"slots.indices[{row}]"
        if slot >= spec.pool:
            return where, f"slot {slot} is out of range for pool={spec.pool} (set 'pool')"
        if slot < lo:
            return where, f"slot {slot} does not fit {spec.index_dtype}"
        if slot >= 0 and slot in seen:
            return where, f"slot {slot} is already used by row {seen[slot]}"
        seen.setdefault(slot, row)
    return None


def _memory_problem(spec: CaseSpec, limits: Mapping[str, int]) -> Rule | None:
    """The whole case is blamed, unless an override is what takes it past the limit."""
    need, limit = estimate_case_bytes(spec), limits.get(spec.tier)
    if limit is None or need <= limit:
        return None
    field = None
    if 2 * _input_bytes(spec) <= limit:
        extra = override_bytes(spec)
        field = f"overrides.{max(extra, key=extra.__getitem__)}"
    what = "inputs and overrides need" if spec.overrides else "inputs need"
    return field, (
        f"{what} about {need / GIB:.2f} GiB, over the {limit / GIB:.2f} GiB limit "
        f"of tier '{spec.tier}' (shrink the sizes or move the case to a bigger tier)"
    )


def case_work(spec: CaseSpec) -> int:
    """State elements a case updates: ``steps * B * HV * K * V`` (the unit of the work limits)."""
    return spec.steps * state_elements(spec)


def state_elements(spec: CaseSpec) -> int:
    """State elements one decode step updates (padding rows included)."""
    return spec.B * spec.HV * spec.K * spec.V


def _work_problem(spec: CaseSpec, limits: Mapping[str, int]) -> Rule | None:
    """The steps are blamed when one step would fit, the whole case otherwise."""
    work, limit = case_work(spec), limits.get(spec.tier)
    if limit is None or work <= limit:
        return None
    field = "steps" if state_elements(spec) <= limit else None
    return field, (
        f"{spec.steps} steps x {state_elements(spec)} state elements = {work:.3g} updates, "
        f"over the {limit:.3g} limit of tier '{spec.tier}' (fewer steps, smaller sizes, "
        "or a bigger tier)"
    )


def nonfinite(tree: Any, prefix: tuple = ()) -> tuple | None:
    """Path of the first inf or NaN in a tree, or None."""
    if isinstance(tree, float) and not math.isfinite(tree):
        return prefix
    if isinstance(tree, dict):
        items: Iterable[tuple[Any, Any]] = tree.items()
    else:
        items = enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        hit = nonfinite(value, (*prefix, key))
        if hit is not None:
            return hit
    return None
