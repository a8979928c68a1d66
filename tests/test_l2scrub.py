"""The L2 scrub reads all of its scratch buffer (under the interpreter on CPU)."""

from __future__ import annotations

import torch

import kernels  # noqa: F401  (sets TRITON_INTERPRET before Triton loads)


def test_scrub_reads_every_scratch_element():
    from harness.bench.l2scrub import BLOCK, L2Scrubber  # imports Triton: after `kernels`

    scrub = L2Scrubber(torch.device("cpu"), l2_bytes=4 * (BLOCK + 100))
    n = scrub.scratch.numel()
    assert n == 2 * (BLOCK + 100)  # ones: each program sums to its element count
    scrub.sink.fill_(float("nan"))
    scrub()
    assert torch.equal(scrub.sink, torch.tensor([BLOCK, BLOCK, n - 2 * BLOCK], dtype=torch.float32))
