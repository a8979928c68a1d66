"""Implementations that declare padding conventions (docs/design.md section 3),
correct ones and ones with the bugs those conventions invite.

All wrap the fp32 torch contract of :mod:`tests.planted.bugs`, translating
the null-block spelling (an index ``<= 0`` is padding) into its ``-1``.
"""

from __future__ import annotations

import torch

from tests.planted.bugs import correct

NULL_SLOT = {"pad": "nonpositive"}
NULL_SLOT_UNWRITTEN = {"pad": "nonpositive", "pad_output": "unwritten"}
UNWRITTEN = {"pad_output": "unwritten"}


def _negative(state_indices: torch.Tensor) -> torch.Tensor:
    """The null-block spelling as the negative one: every index <= 0 becomes -1."""
    return torch.where(state_indices > 0, state_indices, -1).to(state_indices.dtype)


def null_slot(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw) -> None:
    """Correct: slot 0 is the null block, padding rows are written as zeros."""
    correct(mixed_qkv, a, b, A_log, dt_bias, state, _negative(state_indices), out, **kw)


def null_slot_writes_slot0(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """Bug: a padding row spelled 0 runs as a live row on slot 0 (a kernel that
    tests ``index < 0`` where its caller pads with the null block)."""
    idx = torch.where(state_indices < 0, -1, state_indices).to(state_indices.dtype)
    correct(mixed_qkv, a, b, A_log, dt_bias, state, idx, out, **kw)


def null_slot_reads_slot0(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """Bug: a padding row spelled 0 reads slot 0 into its output, but writes no state."""
    saved = state[0].clone()
    null_slot_writes_slot0(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw)
    state[0].copy_(saved)


def unwritten(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw) -> None:
    """Correct under ``pad_output: unwritten``: padding rows of ``out`` are left alone."""
    idx = _negative(state_indices)
    keep = out[idx < 0].clone()
    correct(mixed_qkv, a, b, A_log, dt_bias, state, idx, out, **kw)
    out[idx < 0] = keep


def unwritten_scribbles(mixed_qkv, a, b, A_log, dt_bias, state, state_indices, out, **kw):
    """Bug: declares padding rows unwritten, then writes them (zeros)."""
    correct(mixed_qkv, a, b, A_log, dt_bias, state, _negative(state_indices), out, **kw)


null_slot.conventions = NULL_SLOT
null_slot_writes_slot0.conventions = NULL_SLOT
null_slot_reads_slot0.conventions = NULL_SLOT
unwritten.conventions = NULL_SLOT_UNWRITTEN
unwritten_scribbles.conventions = NULL_SLOT_UNWRITTEN
