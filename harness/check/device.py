"""Checking on a GPU: the same oracle and statistics, run by CuPy on the device.

A block's copies go into device arrays instead of host arrays, its
activations follow them, and ``block_stats`` runs unchanged: the oracle and
the error statistics are written in NumPy's API and run in the module that
owns their arrays (``reference.namespace``). Only scalars and per-(row, head)
maxima come back to the host, so verdicts and locations are the host's.

Memory stays within a budget: half of it for a block's float32 copies, half
for a piece's float64 temporaries. Steps below ``DEVICE_MIN_ELEMS`` state
elements stay on the host, where they cost less than the GPU's per-call
overhead; the verdict is the same either way.

The device is named ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or given as an
``ArrayDevice`` over any module with CuPy's array API (the CPU tests use a
NumPy stand-in). CuPy is imported only when a CUDA check device is asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from harness.check.compare import ErrorStats
from harness.check.step import Block, StepContext, block_rows, block_stats, merge_into, new_stats
from reference.namespace import Array, array_namespace, to_numpy

CHECK_DEVICES = ("auto", "cpu", "cuda")
ENV_VAR = "GDN_CHECK_DEVICE"  # the default choice, for every process of a run
DEVICE_BUDGET_BYTES = 2**34  # device memory one check may use at most ...
DEVICE_FREE_SHARE = 0.5  # ... and at most this share of the memory free when it starts
DEVICE_MIN_ELEMS = 2**16  # state elements from which a step is checked on the device
PIECE_TEMPS = 12  # float64 piece-sized arrays alive at once in a piece's check (8.6 on NumPy)
RELEASE_AFTER_CHECK = True  # give cached device memory back after each check ...
RELEASE_ABOVE_BYTES = 2**28  # ... when CuPy holds more than this (small checks keep theirs)

MakeBlock = Callable[[np.ndarray, Callable[[tuple[int, ...]], Array]], Block]


@dataclass(frozen=True)
class ArrayDevice:
    """Where a device check runs: a module with CuPy's array API, its device index
    (None: the current one) and an optional memory budget in bytes."""

    xp: ModuleType
    index: int | None = None
    budget: int | None = None

    @property
    def name(self) -> str:
        if self._cuda is None:
            return self.xp.__name__
        return "cuda" if self.index is None else f"cuda:{self.index}"

    @property
    def _cuda(self):
        return getattr(self.xp, "cuda", None)

    def activate(self) -> AbstractContextManager:
        """Make this the current device for the arrays and kernels inside."""
        if self._cuda is None or self.index is None:
            return nullcontext()
        return self._cuda.Device(self.index)

    def empty(self, shape: tuple[int, ...]) -> Array:
        """A float32 device array: what a block's copies are written into."""
        return self.xp.empty(shape, dtype=self.xp.float32)

    def put(self, a: Array) -> Array:
        """``a`` on this device (copied there if it is a host array)."""
        return a if array_namespace(a) is self.xp else self.xp.asarray(a)

    def synchronize(self) -> None:
        """Wait for every stream of the device: copies made through other
        libraries (torch) are complete before the check reads them."""
        if self._cuda is not None:
            self._cuda.runtime.deviceSynchronize()

    def free_bytes(self) -> int | None:
        """Memory free on the device, counting what CuPy holds cached; None if unknown."""
        if self._cuda is None:
            return None
        free = int(self._cuda.runtime.memGetInfo()[0])
        return free + int(self.xp.get_default_memory_pool().free_bytes())

    def budget_bytes(self) -> int:
        if self.budget is not None:
            return self.budget
        free = self.free_bytes()
        if free is None:
            return DEVICE_BUDGET_BYTES
        return min(DEVICE_BUDGET_BYTES, int(free * DEVICE_FREE_SHARE))

    def release(self, above: int = 0) -> None:
        """Give the memory CuPy keeps cached back to the driver (for torch's use)
        when CuPy holds more than ``above`` bytes: a small check's few blocks
        stay cached for the next, which would otherwise allocate them again."""
        get_pool = getattr(self.xp, "get_default_memory_pool", None)
        if get_pool is None:
            return
        pool = get_pool()
        if pool.total_bytes() > above:
            pool.free_all_blocks()


# --- choosing the device ------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cuda_unavailable() -> str | None:
    """Why the check cannot run on CUDA here (None: it can)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy finds no CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "CuPy finds no CUDA device"


def resolve_check_device(choice: str | None = None, run_device: str = "cpu") -> str:
    """The check device for a run on ``run_device``: ``"cpu"`` or ``"cuda[:N]"``.

    ``choice`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (None: the
    ``GDN_CHECK_DEVICE`` environment variable, else ``auto``). ``auto`` is
    the GPU the kernels run on when CuPy can use it, else the CPU; ``cuda``
    without an index is that GPU too. Asking for CUDA where it cannot be
    used is an error, not a silent fallback.
    """
    choice = (choice or os.environ.get(ENV_VAR) or "auto").strip().lower()
    kind, sep, index = choice.partition(":")
    if kind not in CHECK_DEVICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"check device must be cpu, cuda, cuda:N or auto, not {choice!r}")
    if kind == "cpu":
        return "cpu"
    on_gpu = run_device.startswith("cuda")
    if kind == "auto" and (not on_gpu or cuda_unavailable()):
        return "cpu"
    why = cuda_unavailable()
    if why:
        raise RuntimeError(f"check device {choice!r}: {why}")
    if index:
        return choice
    return run_device if on_gpu and ":" in run_device else "cuda"


def device_for(device: str | ArrayDevice) -> ArrayDevice | None:
    """The ``ArrayDevice`` that ``device`` names (None for the CPU)."""
    if isinstance(device, ArrayDevice):
        return device
    kind, sep, index = device.partition(":")
    if kind == "cpu" and not sep:
        return None
    if kind != "cuda" or (sep and not index.isdigit()):
        raise ValueError(f"not a check device: {device!r} (cpu, cuda or cuda:N)")
    import cupy

    return ArrayDevice(cupy, int(index) if index else None)


def device_for_size(device: str | ArrayDevice, elems: int) -> ArrayDevice | None:
    """Where a check of ``elems`` state elements runs: the device ``device``
    names, or the host (None) for the CPU and for checks too small to pay
    the GPU's per-call overhead."""
    target = device_for(device)
    return target if target is not None and elems >= DEVICE_MIN_ELEMS else None


# --- checking a step ----------------------------------------------------------------


def on_device(block: Block, device: ArrayDevice) -> Block:
    """``block`` with every array on ``device`` (host ones are copied there) and
    its rows and slots on the host."""
    return Block(
        tuple(device.put(a) for a in block.acts),
        to_numpy(block.rows),
        to_numpy(block.slots),
        device.put(block.pre),
        [(device.put(o), device.put(s)) for o, s in block.tested],
    )


def sizes(device: ArrayDevice, tested: int, shape: tuple[int, int, int]) -> tuple[int, int]:
    """(rows per block, float64 state bytes per piece) within the device's budget."""
    HV, K, V = shape
    half = device.budget_bytes() // 2
    return block_rows(tested, HV, K, V, half), max(K * V * 8, half // PIECE_TEMPS)


def check_on_device(
    ctx: StepContext,
    total_rows: int,
    tested: int,
    shape: tuple[int, int, int],
    make_block: MakeBlock,
    device: ArrayDevice,
) -> list[ErrorStats]:
    """Stats of a whole step (``new_stats`` order), checked on ``device``.
    ``make_block(live_rows, new_array)`` copies one block into device arrays
    from ``new_array``."""
    totals = new_stats(ctx, tested)
    with device.activate():
        try:
            n, piece_bytes = sizes(device, tested, shape)
            for start in range(0, total_rows, n):
                rows = np.arange(start, min(start + n, total_rows))
                block = on_device(make_block(rows, device.empty), device)
                device.synchronize()
                merge_into(totals, block_stats(ctx, block, piece_bytes=piece_bytes))
                del block  # before the next block is made
        finally:
            if RELEASE_AFTER_CHECK:
                device.release(RELEASE_ABOVE_BYTES)
    return totals
