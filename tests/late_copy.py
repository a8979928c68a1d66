"""A predecessor kernel for the programmatic-dependent-launch tests: it lets its
dependents launch at once but writes its output only about a millisecond later,
so a dependent that reads before ``griddepcontrol.wait`` reads stale data."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents

BLOCK = 1024
# Dependent multiply-adds before the copy, about a millisecond: far longer than the
# host takes to launch the dependent after this kernel.
SPIN = 500_000


# Grid: (cdiv(N, BLOCK),). Each program lets PDL dependents launch at once, spins
#   for SPIN dependent multiply-adds, then copies its BLOCK
#   elements of src to dst (tail masked): a predecessor whose output is late.
@triton.jit
def _late_copy_kernel(src_ptr, dst_ptr, N, SPIN, BLOCK: tl.constexpr):
    gdc_launch_dependents()
    x = tl.program_id(0).to(tl.float32) * 1e-9 + 1.0
    for _ in range(SPIN):
        x = x * 0.999999 + 1e-6
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    # x > 0 always holds; the store depends on it, so the spin cannot be dropped.
    tl.store(dst_ptr + offs, tl.load(src_ptr + offs, mask=mask), mask=mask & (x > 0.0))


def late_copy(src: torch.Tensor, dst: torch.Tensor) -> None:
    """``dst.copy_(src)`` for contiguous tensors of one shape and dtype, written late."""
    n = src.numel()
    _late_copy_kernel[(triton.cdiv(n, BLOCK),)](src, dst, n, SPIN, BLOCK=BLOCK)
