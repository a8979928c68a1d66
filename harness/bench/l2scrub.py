"""Clear L2 of lines that an earlier kernel loaded with ``evict_last``, before a timing.

Rotating input sets keep a timed call from finding its own data in L2, but
only for lines of normal priority. A kernel that loads with ``evict_last``
leaves its last lines in L2 long after it ends: normal traffic evicts other
normal lines first. On an H100, a step timed right after one that loaded the
same state that way ran 3.6% faster than from a clean L2
(``benchmarks/l2_residue_probe.py``, docs/performance.md). So the bench
scrubs before each timing: it reads a scratch buffer of twice the L2 with
``evict_last``, which displaces the stale lines at their own priority, then
again with ``evict_first``, so the scratch lines themselves go first.

The bench imports it only on a CUDA device; under the Triton interpreter it
runs too (tests/test_l2scrub.py), where it only exercises the code.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096


# Grid: (cdiv(N, BLOCK),), 4 warps. Program p reads buf[p * BLOCK:][:BLOCK] (tail
#   masked) with the POLICY eviction priority and stores its sum to out[p], so the
#   loads cannot be dropped.
@triton.jit
def _read_kernel(buf_ptr, out_ptr, N, BLOCK: tl.constexpr, POLICY: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(buf_ptr + offs, mask=offs < N, other=0.0, eviction_policy=POLICY)
    tl.store(out_ptr + tl.program_id(0), tl.sum(x, axis=0))


def read(buf: torch.Tensor, out: torch.Tensor, policy: str = "") -> None:
    """Read all of ``buf`` once with eviction ``policy`` ("", "evict_last",
    "evict_first"); ``out`` (cdiv(numel, BLOCK) floats) gets each block's sum."""
    n = buf.numel()
    _read_kernel[(triton.cdiv(n, BLOCK),)](buf, out, n, BLOCK=BLOCK, POLICY=policy, num_warps=4)


class L2Scrubber:
    """Scratch memory for one device, and the two reads that scrub its L2."""

    def __init__(self, device: torch.device, l2_bytes: int) -> None:
        self.scratch = torch.ones(max(1, 2 * l2_bytes // 4), device=device)
        self.sink = torch.empty(triton.cdiv(self.scratch.numel(), BLOCK), device=device)

    def __call__(self) -> None:
        for policy in ("evict_last", "evict_first"):
            read(self.scratch, self.sink, policy)
        if self.scratch.is_cuda:
            torch.cuda.synchronize(self.scratch.device)
