"""Correctness first: each implementation is checked on the very buffers it is timed on.

A fast wrong kernel is worthless, so before a timing every implementation
runs once on set 0 from the same starting state, with ``out`` poisoned so
that a row left unwritten anywhere in the batch fails, and a sample of rows
(first and last included) goes through the harness's own per-element check
(``harness.check``: the float64 oracle on the stored inputs, the tolerance
policy, the error statistics). A case that fails is reported as FAIL and
never timed.

Each implementation is held to its own padding conventions
(``harness.core.conventions``): a live row's output must be written; a
padding row's must be exact zeros (``pad_output: zero``) or keep its bits
(``unwritten``); under ``pad: nonpositive`` slot 0, the null block, must
keep its bits. The bench's sets have no padding rows (``inputsets.py``), so
there every output row is live and must be written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from harness.bench.inputsets import InputSets
from harness.bench.timing import sync
from harness.check.compare import ErrorStats
from harness.check.pool import check_blocks
from harness.check.step import Block, StepContext
from harness.check.tolerance import resolve
from harness.core.conventions import DEFAULT, NULL_SLOT, UNWRITTEN, Conventions
from harness.core.host import to_f64, to_host
from harness.core.layouts import KV


def sample_rows(B: int, n: int) -> np.ndarray:
    """Up to ``n`` rows spread over the batch, always including the first and the last."""
    if n >= B:
        return np.arange(B)
    return np.unique(np.linspace(0, B - 1, n).round().astype(np.int64))


@dataclass
class CaseCheck:
    """Set 0's sampled rows and what checking them needs, shared by every implementation."""

    rows: np.ndarray  # sampled batch rows of set 0
    slots: torch.Tensor  # the slots they name
    pre: torch.Tensor  # those slots before any call (restored before each)
    acts: tuple[np.ndarray, ...]  # qkv, a, b of the rows; A_log, dt_bias (float64)
    ctx: StepContext


def prepare_check(sets: InputSets, n_rows: int) -> CaseCheck:
    """Pick the rows, keep their slots' starting state, and resolve the tolerances."""
    spec, x = sets.spec, sets.inputs
    rows = sample_rows(spec.B, n_rows)
    rows_t = torch.as_tensor(rows, device=x.device)
    slots = x.state_indices[rows_t].long()
    qkv, a, b = (to_f64(t[rows_t]) for t in (x.mixed_qkv, x.a, x.b))
    ctx = StepContext(
        H=spec.H,
        scale=spec.effective_scale,
        use_qk_l2norm=spec.use_qk_l2norm,
        tol_out=resolve(spec.tol_out, spec.act_dtype, spec.K),
        tol_state=resolve(spec.tol_state, spec.state_dtype, spec.K),
        step=0,
    )
    acts = (qkv, a, b, to_f64(x.A_log), to_f64(x.dt_bias))
    return CaseCheck(rows, slots, x.state[slots].clone(), acts, ctx)


def run_check(
    fn: Callable[..., None],
    sets: InputSets,
    chk: CaseCheck,
    conventions: Conventions = DEFAULT,
) -> tuple[bool, str]:
    """Call ``fn`` once on set 0 from the shared starting state; (passed, detail).

    ``conventions`` are the implementation's: which rows of set 0 are
    padding, what their output rows must hold, whether slot 0 is the null
    block. Sets that give slot 0 to a live row cannot test a null-block
    implementation: that is the caller's error, raised as ``ValueError``.
    """
    if conventions.null_slot and not sets.null_slot:
        raise ValueError("a null-block implementation needs sets built with null_slot=True")
    x, layout = sets.inputs, sets.spec.layout.state_layout
    x.state[chk.slots] = chk.pre
    null_before = x.state[NULL_SLOT].clone() if conventions.null_slot else None
    out = sets.out(0)
    out.fill_(float("nan"))
    before = out.clone()
    try:
        fn(*sets.args(0), **sets.kwargs())
        sync(x.device)
    except Exception as exc:
        return False, f"raised {type(exc).__name__}: {exc}"
    padding = torch.tensor(
        [conventions.is_padding(int(i)) for i in sets.indices(0).tolist()], device=x.device
    )
    msgs = output_rows(out, before, padding, conventions.pad_output)
    if null_before is not None and not same_bits(x.state[NULL_SLOT], null_before):
        msgs.append("slot 0 (the null block) was written")
    rows_t = torch.as_tensor(chk.rows, device=x.device)

    def block(chunk: np.ndarray, new_array) -> Block:
        pick = torch.as_tensor(chunk, device=x.device)
        slots = chk.slots[pick]
        tested = (
            to_host(out[rows_t[pick]], new_array),
            _canonical(x.state[slots], layout, new_array),
        )
        qkv, a, b, A_log, dt_bias = chk.acts
        return Block(
            acts=(qkv[chunk], a[chunk], b[chunk], A_log, dt_bias),
            rows=chk.rows[chunk],
            slots=slots.cpu().numpy(),
            pre=_canonical(chk.pre[pick], layout, new_array),
            tested=[tested],
        )

    spec = sets.spec
    stats = check_blocks(chk.ctx, len(chk.rows), 1, (spec.HV, spec.K, spec.V), block)
    return _verdict(msgs, len(chk.rows), *stats)


_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bits as integers of its width (NaN payloads compare equal to themselves)."""
    return t.contiguous().view(_INTS[t.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` hold the same bits (NaNs included)."""
    return a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def output_rows(
    out: torch.Tensor, before: torch.Tensor, padding: torch.Tensor, pad_output: str
) -> list[str]:
    """What is wrong with ``out [B, HV, V]`` after a call, row by row: a live row
    not written (not finite where ``before`` was NaN), a padding row not zero
    (``pad_output: zero``) or not as it was (``unwritten``)."""
    B, msgs = out.shape[0], []
    live = ~padding
    unwritten = int((~torch.isfinite(out[live])).flatten(1).any(dim=1).sum().item())
    if unwritten:
        msgs.append(f"{unwritten} of {B} output rows not finite (unwritten?)")
    if not bool(padding.any()):
        return msgs
    pad_out, pad_before = out[padding], before[padding]
    if pad_output == UNWRITTEN:
        changed = (_bits(pad_out) != _bits(pad_before)).flatten(1).any(dim=1)
        what = "written (pad_output unwritten: they must keep their bits)"
    else:
        changed = (pad_out != 0).flatten(1).any(dim=1)  # NaN != 0 too
        what = "not exact zeros"
    bad = int(changed.sum().item())
    if bad:
        msgs.append(f"{bad} of {int(padding.sum().item())} padding output rows {what}")
    return msgs


def _canonical(slots: torch.Tensor, layout: str, new_array) -> np.ndarray:
    """Slots as the oracle holds them, ``[R, HV, K, V]``, in a host array."""
    return to_host(slots if layout == KV else slots.transpose(-1, -2), new_array)


def _verdict(msgs: list[str], n_rows: int, out: ErrorStats, state: ErrorStats):
    for s in (out, state):
        if not s.ok:
            msgs.append(
                f"{s.quantity}: {s.over} elements over tolerance (worst {s.worst_ratio:.3g}x bound)"
            )
    if msgs:
        return False, "; ".join(msgs)
    return True, (
        f"{n_rows} sampled rows vs float64 oracle; worst err/bound out "
        f"{out.worst_ratio:.3g}, state {state.worst_ratio:.3g}"
    )
