"""The per-element check of one step: the oracle on the stored inputs, the
bound, and the error statistics of every pair, piece by piece.

A piece is a few rows by a few value heads, sized to stay in the CPU's
caches: the oracle and the comparison make a dozen passes over it. Small
steps run in this process. Big ones (real model shapes: up to 2**30 state
elements a step) are spread over worker processes, since NumPy's many short
calls hold the GIL and threads do not scale; the workers read the host copies
of the states from files in shared memory and send back statistics only.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from harness.compare import ErrorStats, relative_floor
from harness.tolerance import ElementTol
from reference.oracle import decode_rows

PIECE_BYTES = 2**19  # float64 state elements of one piece
JOB_PIECES = 16  # pieces per job sent to a worker
POOL_MIN_ELEMS = 2**23  # state elements a step must have to go to the workers
BLOCK_BYTES = 2**30  # host copies (float32) of one block of rows, all arrays together
# a worker is one CPU's worth: BLAS threads of their own would fight the others
ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class StepContext:
    """What every piece of one step shares (small, sent to each worker job)."""

    H: int
    scale: float
    use_qk_l2norm: bool
    tol_out: ElementTol
    tol_state: ElementTol
    step: int


@dataclass
class Block:
    """A block of live rows: their activations, the pre-step states of the slots
    they name (canonical ``[R, HV, K, V]``) and each participant's results."""

    acts: tuple[np.ndarray, ...]  # qkv, a, b of these rows; A_log, dt_bias
    rows: np.ndarray  # batch rows
    slots: np.ndarray  # the slots they name
    pre: np.ndarray  # [R, HV, K, V]
    tested: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (out, state)


def pieces(R: int, HV: int, K: int, V: int) -> Iterator[tuple[slice, slice]]:
    """(rows, heads) pieces of ``R`` rows, each about PIECE_BYTES of float64 state."""
    block = K * V * 8  # one row, one head
    if HV * block <= PIECE_BYTES:
        n = PIECE_BYTES // (HV * block)
        for r0 in range(0, R, n):
            yield slice(r0, min(r0 + n, R)), slice(0, HV)
        return
    n = max(1, PIECE_BYTES // block)
    for r0 in range(R):
        for h0 in range(0, HV, n):
            yield slice(r0, r0 + 1), slice(h0, min(h0 + n, HV))


def new_stats(ctx: StepContext, tested: int) -> list[ErrorStats]:
    """Empty stats in piece order: (out, state) per participant vs the oracle,
    then (out, state) of the first participant vs the second."""
    pairs = tested + (1 if tested == 2 else 0)
    return [ErrorStats(q, "", ctx.step, "") for _ in range(pairs) for q in ("out", "state")]


def piece_stats(ctx: StepContext, block: Block, r: slice, heads: slice, stats) -> None:
    """Fold one piece into ``stats`` (as laid out by ``new_stats``)."""
    qkv, a, b, A_log, dt_bias = block.acts
    ref = decode_rows(
        qkv[r],
        a[r],
        b[r],
        A_log,
        dt_bias,
        block.pre[r, heads],
        H=ctx.H,
        scale=ctx.scale,
        use_qk_l2norm=ctx.use_qk_l2norm,
        with_magnitude=True,
        heads=heads,
    )
    refs = (ref.out, ref.state)
    bounds = (
        ctx.tol_out.bound(ref.out, ref.out_mag),
        ctx.tol_state.bound(ref.state, ref.state_mag),
    )
    floors = tuple(relative_floor(x) for x in refs)
    rows, slots = block.rows[r], block.slots[r]
    for i, tested in enumerate(block.tested):
        for j in range(2):
            stats[2 * i + j].add(
                tested[j][r, heads], refs[j], bounds[j], rows, slots, heads.start, floors[j]
            )
    if len(block.tested) == 2:  # implementation vs implementation: reported, not checked
        for j in range(2):
            x, y = block.tested[0][j][r, heads], block.tested[1][j][r, heads]
            stats[4 + j].add(x, y, None, rows, slots, heads.start)


Piece = tuple[slice, slice]


def block_stats(ctx: StepContext, block: Block, jobs: list[list[Piece]] | None = None):
    """Stats of a block (or of some of its pieces), in ``new_stats`` order."""
    stats = new_stats(ctx, len(block.tested))
    if jobs is None:
        _, HV, K, V = block.pre.shape
        jobs = [list(pieces(block.rows.size, HV, K, V))]
    for job in jobs:
        for r, heads in job:
            piece_stats(ctx, block, r, heads, stats)
    return stats


# --- worker processes ----------------------------------------------------------


@dataclass(frozen=True)
class _BlockRef:
    """A block whose big arrays live in ``.npy`` files (opened memory-mapped)."""

    acts: tuple[np.ndarray, ...]
    rows: np.ndarray
    slots: np.ndarray
    pre: str
    tested: list[tuple[str, str]]

    def open(self) -> Block:
        def load(path: str) -> np.ndarray:
            return np.load(path, mmap_mode="r")

        return Block(
            self.acts,
            self.rows,
            self.slots,
            load(self.pre),
            [(load(o), load(s)) for o, s in self.tested],
        )


def _job(ctx: StepContext, ref: _BlockRef, job: list[tuple[slice, slice]]) -> list[ErrorStats]:
    return block_stats(ctx, ref.open(), [job])


def _keep_heap() -> None:
    """Serve the pieces' temporaries from the heap: with glibc's defaults a fresh
    process maps and unmaps every array over 128 KiB, and page faults then take
    half its time."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 2**28)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: slower, still right


def _init_worker(parent: int) -> None:
    """Workers exit when the process that started them is gone (killed on a crash)."""
    _keep_heap()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def default_workers() -> int:
    """CPUs of this process, shared with the sibling processes that also check."""
    if "GDN_CHECK_WORKERS" in os.environ:
        return max(1, int(os.environ["GDN_CHECK_WORKERS"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    siblings = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (cpus or 1) // max(1, siblings))


def _scratch_dir() -> str:
    """Shared memory when it has room for two blocks, else the temp dir."""
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize >= 3 * BLOCK_BYTES:
            return tempfile.mkdtemp(prefix="gdn-check-", dir=shm)
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="gdn-check-")


class CheckPool:
    """Worker processes for big steps, started on first use and kept for the run."""

    def __init__(self, workers: int):
        self.workers = workers
        self._exec: ProcessPoolExecutor | None = None
        self._dir: str | None = None
        self._files = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._exec is None:
            for var in ONE_THREAD_VARS:  # read by the workers' BLAS when it loads
                os.environ.setdefault(var, "1")
            self._exec = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
            self._dir = _scratch_dir()
        return self._exec

    def new_array(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array in a file the workers can map."""
        self._executor()
        assert self._dir is not None
        self._files += 1
        path = os.path.join(self._dir, f"a{self._files}.npy")
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)

    def submit(self, ctx: StepContext, block: Block) -> list[Future]:
        """Start checking ``block`` (whose arrays came from ``new_array``)."""
        ref = _BlockRef(
            block.acts,
            block.rows,
            block.slots,
            block.pre.filename,
            [(o.filename, s.filename) for o, s in block.tested],
        )
        _, HV, K, V = block.pre.shape
        todo = list(pieces(block.rows.size, HV, K, V))
        jobs = [todo[i : i + JOB_PIECES] for i in range(0, len(todo), JOB_PIECES)]
        return [self._executor().submit(_job, ctx, ref, job) for job in jobs]

    @staticmethod
    def release(block: Block) -> None:
        for a in [block.pre, *(x for pair in block.tested for x in pair)]:
            path = getattr(a, "filename", None)
            if path and os.path.exists(path):
                os.unlink(path)

    def close(self) -> None:
        if self._exec is not None:
            self._exec.shutdown(wait=False, cancel_futures=True)
            self._exec = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_POOL: CheckPool | None = None


def shared_pool() -> CheckPool:
    global _POOL
    if _POOL is None:
        _POOL = CheckPool(default_workers())
        atexit.register(_POOL.close)
    return _POOL


def block_rows(tested: int, HV: int, K: int, V: int) -> int:
    """Rows per block: the float32 copies of pre state and results within BLOCK_BYTES."""
    per_row = (1 + tested) * HV * K * V * 4 + tested * HV * V * 4
    return max(1, BLOCK_BYTES // per_row)


def check_blocks(
    ctx: StepContext,
    total_rows: int,
    tested: int,
    shape: tuple[int, int, int],
    make_block: Callable[[np.ndarray, Callable[[tuple[int, ...]], np.ndarray]], Block],
) -> list[ErrorStats]:
    """Stats of a whole step: ``make_block(live_row_indices, new_array)`` fills one
    block's arrays; blocks go to the workers when the step is big, one block
    being filled while the previous one is checked."""
    HV, K, V = shape
    totals = new_stats(ctx, tested)
    if total_rows * HV * K * V < POOL_MIN_ELEMS or default_workers() < 2:
        block = make_block(np.arange(total_rows), lambda s: np.empty(s, np.float32))
        _merge(totals, block_stats(ctx, block))
        return totals
    pool = shared_pool()
    n = block_rows(tested, HV, K, V)
    pending: list[tuple[Block, list[Future]]] = []
    try:
        for start in range(0, total_rows, n):
            block = make_block(np.arange(start, min(start + n, total_rows)), pool.new_array)
            pending.append((block, pool.submit(ctx, block)))
            if len(pending) == 2:
                _collect(totals, *pending.pop(0))
        while pending:
            _collect(totals, *pending.pop(0))
    finally:
        for block, futures in pending:
            for f in futures:
                f.cancel()
            pool.release(block)
    return totals


def _collect(totals: list[ErrorStats], block: Block, futures: list[Future]) -> None:
    try:
        for f in futures:
            _merge(totals, f.result())
    finally:
        CheckPool.release(block)


def _merge(totals: list[ErrorStats], parts: list[ErrorStats]) -> None:
    for total, part in zip(totals, parts, strict=True):
        total.merge(part)
