"""Device-to-device copies: the bandwidth behind the floor, and a copy of a step's size.

* **The floor's denominator.** A 2 GiB copy, measured on the same card in the
  same run, at the start and again at the end (it moves by a few percent
  between runs on one card); the floor takes the faster of the two, so a
  slow first measurement never flatters the kernels. Numbers from different
  runs or cards are not comparable; the JSON records the card and versions.
* **A copy of the same size.** Next to each case that moves at least
  ``SAME_COPY_MIN_BYTES``, a copy of half the step's bytes (so it moves as
  many), two buffer pairs in turn, timed like the 2 GiB copy: issued eagerly
  between CUDA events (captured in a graph, the same copies ran about a
  fifth slower on an H100, as if on the copy engines). "% of copy" says how
  close the step comes to memory traffic of its own size: short steps pay a
  ramp-up and a tail that the 2 GiB copy does not. Smaller copies would time
  their launches, not the memory.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace

import torch

from harness.bench.rows import CopyBandwidth
from harness.bench.timing import sync

COPY_BYTES = 2 * 2**30  # the bandwidth probe copies this many bytes (read + write = 2x)
DRY_COPY_BYTES = 16 * 2**20
COPY_REPS = 20
SAME_COPY_MIN_BYTES = 64 * 2**20  # below this an eager copy times its launch
SAME_COPY_MIN_CALLS = 10  # copies per timed sample, so one launch gap is spread thin


def eager_copy_seconds(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], copies: int, device: torch.device, reps: int
) -> float:
    """Median seconds per copy: ``copies`` copies, taking the (source, target)
    ``pairs`` in turn, issued back to back between two CUDA events (wall clock
    on CPU); the median is over ``reps`` such samples."""
    calls = (list(pairs) * math.ceil(copies / len(pairs)))[:copies]
    samples = []
    for _ in range(max(1, reps)):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for src, dst in calls:
                dst.copy_(src)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            for src, dst in calls:
                dst.copy_(src)
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples) / len(calls)


def _buffer_pairs(
    nbytes: int, device: torch.device, n: int, warm: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` (source, target) pairs of ``nbytes``, each copied ``warm`` times untimed."""
    pairs = [
        (
            torch.ones(nbytes, dtype=torch.uint8, device=device),
            torch.empty(nbytes, dtype=torch.uint8, device=device),
        )
        for _ in range(n)
    ]
    for _ in range(warm):
        for src, dst in pairs:
            dst.copy_(src)
    sync(device)
    return pairs


def measure_copy_bandwidth(
    device: torch.device, nbytes: int, reps: int = COPY_REPS
) -> CopyBandwidth:
    """Device-to-device copy bandwidth (bytes read + bytes written per second).

    This is the practical ceiling that the floor divides by: a kernel that
    streams its bytes as well as ``cudaMemcpy`` does sits at 100%.
    """
    pairs = _buffer_pairs(nbytes, device, 1, warm=3)
    seconds = eager_copy_seconds(pairs, 1, device, reps)
    if device.type == "cuda":
        method = "torch copy_ of a contiguous uint8 buffer (cudaMemcpyAsync D2D), CUDA events"
    else:
        method = "torch copy_ on CPU, wall clock (dry run: meaningless as a floor)"
    del pairs
    return CopyBandwidth(
        bytes_copied=nbytes,
        bytes_moved=2 * nbytes,
        reps=reps,
        median_ms=seconds * 1e3,
        GBps=2 * nbytes / seconds / 1e9,
        method=method,
    )


def best_copy(first: CopyBandwidth, last: CopyBandwidth) -> CopyBandwidth:
    """The faster of the run's two copy measurements, with both recorded."""
    best = max(first, last, key=lambda c: c.GBps)
    return replace(best, start_GBps=first.GBps, end_GBps=last.GBps)


def same_size_copy(nbytes: int, device: torch.device, replays: int) -> float:
    """Microseconds per device-to-device copy of ``nbytes``: two buffer pairs in
    turn (each pair is bigger than L2 from ``SAME_COPY_MIN_BYTES`` up), repeated
    to ``SAME_COPY_MIN_CALLS`` copies back to back between two CUDA events
    (eagerly, as the 2 GiB copy is timed); median over ``replays``."""
    pairs = _buffer_pairs(nbytes, device, 2)
    return eager_copy_seconds(pairs, SAME_COPY_MIN_CALLS, device, replays) * 1e6
