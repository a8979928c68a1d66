"""Timing calls as serving runs them: CUDA-graph replay from a scrubbed L2.

* **CUDA-graph replay.** A decode step at small batch lasts a few
  microseconds, less than a Python launch; serving replays CUDA graphs, so the
  bench does too: one graph holds ``R`` calls (one per input set), and the
  time per call is the median replay time divided by ``R``.
* **A scrubbed L2 before each timing.** Lines that an earlier implementation
  loaded with ``evict_last`` outlive any amount of normal traffic, and a
  later implementation that reads the same state finds them. Each timing
  starts after ``l2scrub.py`` has displaced them.

Without a CUDA device (``--dry``) the calls run eagerly under wall time,
which exercises the code, not the hardware.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

WARMUP_REPLAYS = 5
DEFAULT_L2_BYTES = 50 * 2**20  # H100 SXM, when the device does not say


@dataclass
class Timing:
    """Per-call time of one implementation on one case."""

    median_us: float
    min_us: float
    replays: int
    calls_per_replay: int
    method: str  # "cuda-graph" or "wall (dry)"


def sync(device: torch.device) -> None:
    """Wait for the device's work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Give the cached device memory of a finished case back before the next."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def l2_bytes(device: torch.device) -> int:
    """The device's L2 size (an H100's where the device does not say)."""
    if device.type != "cuda":
        return DEFAULT_L2_BYTES
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


@functools.cache
def _l2_scrubber(device: torch.device) -> Callable[[], None]:
    # Imported here: the module defines a Triton kernel, which only a CUDA device
    # runs, and on the CPU it must be defined after `kernels` set TRITON_INTERPRET.
    from harness.bench.l2scrub import L2Scrubber

    return L2Scrubber(device, l2_bytes(device))


def scrub_l2(device: torch.device) -> None:
    """Evict what earlier kernels left in L2 with evict_last (``l2scrub.py``)."""
    index = torch.cuda.current_device() if device.index is None else device.index
    _l2_scrubber(torch.device("cuda", index))()


def time_calls(
    calls: Sequence[Callable[[], Any]],
    device: torch.device,
    replays: int,
    *,
    use_graph: bool,
    warmup: int = WARMUP_REPLAYS,
    scrub: bool = True,
) -> Timing:
    """Time ``calls`` (one per input set) as one unit; return the time per call.

    With ``use_graph`` the calls are warmed up outside capture (Triton compiles
    on the first call), captured into ONE CUDA graph, and the graph is replayed
    ``replays`` times, each timed with CUDA events; the per-call time is the
    median replay time divided by ``len(calls)``. Without it (dry runs) the
    calls run eagerly and wall time is taken, which only exercises the code.
    ``scrub`` first clears L2 of lines left by earlier kernels (``l2scrub.py``).
    """
    if not use_graph:
        return _time_eager(calls, device, replays)
    if scrub:  # lines an earlier kernel kept with evict_last would flatter these calls
        scrub_l2(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            for call in calls:
                call()
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    # Keep whatever the captured calls return (FLA allocates its outputs) alive while the
    # graph replays: each call then writes its own buffers, as an in-place kernel does,
    # instead of one reused block that could stay in L2.
    with torch.cuda.graph(graph):
        keep = [call() for call in calls]
    torch.cuda.synchronize(device)
    for _ in range(warmup):
        graph.replay()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(replays)]
    for s, e in zip(starts, ends, strict=True):
        s.record()
        graph.replay()
        e.record()
    torch.cuda.synchronize(device)
    samples = [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]  # ms
    del graph, keep
    return _timing(samples, len(calls), "cuda-graph")


def _time_eager(calls: Sequence[Callable[[], Any]], device: torch.device, replays: int) -> Timing:
    """Dry runs: one untimed call, then ``replays`` rounds of every call, wall clock."""
    for call in calls[:1]:
        call()
    sync(device)
    samples = []
    for _ in range(max(1, replays)):
        start = time.perf_counter()
        for call in calls:
            call()
        sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return _timing(samples, len(calls), "wall (dry)")


def _timing(samples_ms: list[float], calls: int, method: str) -> Timing:
    median, fastest = statistics.median(samples_ms), min(samples_ms)
    return Timing(median * 1e3 / calls, fastest * 1e3 / calls, len(samples_ms), calls, method)
