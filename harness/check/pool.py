"""Checking a whole step, block by block: in this process for small steps, over
worker processes for big ones, or on a GPU (``harness.check.device``).

Real model shapes reach 2**30 state elements a step. NumPy's many short calls
hold the GIL, so threads do not scale; worker processes do. The parent copies
each block (pre-step states and results, float32) into ``.npy`` files in
shared memory, and the workers map them, check their rows and send back
statistics only. One block is filled while the previous one is checked.

Workers exit with the process that started them, their files are removed when
a block is done, on an error, when the pool closes (before multiprocessing
joins its children at exit), and by the next pool for any owner that died.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context, util

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: scratch folders of killed owners are not swept
    fcntl = None

from harness.check import device as check_device
from harness.check.compare import ErrorStats
from harness.check.device import ArrayDevice
from harness.check.step import (
    Block,
    Piece,
    StepContext,
    block_rows,
    block_stats,
    merge_into,
    new_stats,
    pieces,
)
from harness.core.host import cpu_count

JOB_PIECES = 16  # pieces per job sent to a worker
POOL_MIN_ELEMS = 2**23  # state elements a step must have to go to the workers
BLOCK_BYTES = 2**30  # host copies of one block, all arrays together
LOCAL_BLOCK_BYTES = 2**26  # the same when checking in this process
SCRATCH_PREFIX = "gdn-check-"
# a worker is one CPU's worth: BLAS threads of its own would fight the others
ONE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

MakeBlock = Callable[[np.ndarray, Callable[[tuple[int, ...]], np.ndarray]], Block]


_ENV_LOCK = threading.Lock()


@contextmanager
def spawn_env(values: dict[str, str], keep_set: bool = False) -> Iterator[None]:
    """Environment for the processes spawned inside (BLAS reads its thread count
    when it loads, in the child); this process's own comes back on exit. With
    ``keep_set``, a variable the user set keeps its value. One at a time: the
    environment is the whole process's."""
    with _ENV_LOCK:
        saved = {var: os.environ.get(var) for var in values}
        for var, value in values.items():
            if not (keep_set and saved[var] is not None):
                os.environ[var] = value
        try:
            yield
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


def default_workers() -> int:
    """CPUs of this process, shared with the sibling processes that also check."""
    if "GDN_CHECK_WORKERS" in os.environ:
        return max(1, int(os.environ["GDN_CHECK_WORKERS"]))
    siblings = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, cpu_count() // max(1, siblings))


# --- in the workers --------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """Rows ``row0 ..`` of a block whose big arrays live in ``.npy`` files."""

    acts: tuple[np.ndarray, ...]  # these rows' qkv, a, b; A_log, dt_bias
    rows: np.ndarray
    slots: np.ndarray
    row0: int
    pre: str
    tested: list[tuple[str, str]]
    pieces: list[Piece]  # rows relative to row0

    def block(self) -> Block:
        end = self.row0 + self.rows.size

        def load(path: str) -> np.ndarray:
            return np.load(path, mmap_mode="r")[self.row0 : end]

        tested = [(load(o), load(s)) for o, s in self.tested]
        return Block(self.acts, self.rows, self.slots, load(self.pre), tested)


def _run_job(ctx: StepContext, job: _Job) -> list[ErrorStats]:
    return block_stats(ctx, job.block(), [job.pieces])


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


_STARTED = None  # set by the parent once every worker is spawned


def _init_worker(parent: int, started) -> None:
    """Workers exit when the process that started them is gone (killed on a crash)."""
    global _STARTED
    _STARTED = started
    _keep_heap()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _hold() -> None:
    """Keep this worker busy until all are spawned (an idle one would take the next job)."""
    _STARTED.wait(timeout=60)


# --- scratch files -----------------------------------------------------------------


def _scratch_roots() -> list[str]:
    return ["/dev/shm", tempfile.gettempdir()]


LOCK_NAME = ".owner.lock"


def _lock(folder: str):
    """Hold the folder's lock for this process's lifetime (the kernel drops it when
    the process dies, however it dies); None where there is no flock."""
    if fcntl is None:
        return None
    fd = os.open(os.path.join(folder, LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _owner_gone(folder: str) -> bool:
    """Whether nobody holds the folder's lock: its owner has ended. Pids do not
    tell (they are reused, and another container sharing /dev/shm has its own)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR)
    except OSError:
        return False  # no lock (yet): leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_scratch(pid: int | None = None) -> None:
    """Remove the scratch folders whose owner has ended (only process ``pid``'s if given)."""
    pattern = f"{SCRATCH_PREFIX}{'*' if pid is None else pid}-*"
    for root in _scratch_roots():
        for path in glob.glob(os.path.join(root, pattern)):
            if _owner_gone(path):
                shutil.rmtree(path, ignore_errors=True)


def _scratch_dir(disk: bool = False) -> tuple[str, int | None]:
    """A folder for this process's block files, and its held lock: shared memory
    when it has room for two blocks and more, else the temp dir."""
    prefix = f"{SCRATCH_PREFIX}{os.getpid()}-"
    folder = None
    if not disk:
        try:
            st = os.statvfs("/dev/shm")
            if st.f_bavail * st.f_frsize >= 3 * BLOCK_BYTES:
                folder = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
        except OSError:
            pass
    folder = folder or tempfile.mkdtemp(prefix=prefix)
    return folder, _lock(folder)


# --- the pool ------------------------------------------------------------------------


class CheckPool:
    """Worker processes for big steps, started on first use and kept for the run."""

    def __init__(self, workers: int):
        self.workers = workers
        self._exec: ProcessPoolExecutor | None = None
        self._dir: str | None = None
        self._dirs: list[tuple[str, int | None]] = []  # every folder made, and its lock
        self._on_disk = False
        self._files = 0
        self._live: set[str] = set()
        # at exit: after nothing else runs, before multiprocessing closes the
        # executor's queues (priority 10) and joins the workers
        util.Finalize(self, self.close, exitpriority=100)

    def _executor(self) -> ProcessPoolExecutor:
        if self._exec is None:
            remove_scratch()  # left by owners that were killed
            self._exec = self._start()
            self._dir = self._new_dir()
            self._on_disk = not self._dir.startswith("/dev/shm/")
        return self._exec

    def _new_dir(self, disk: bool = False) -> str:
        folder, lock = _scratch_dir(disk)
        self._dirs.append((folder, lock))
        return folder

    def _start(self) -> ProcessPoolExecutor:
        """Start every worker now, with one BLAS thread each (read when BLAS loads)."""
        ctx = get_context("spawn")
        started = ctx.Event()
        with spawn_env(dict.fromkeys(ONE_THREAD_VARS, "1")):
            ex = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(os.getpid(), started),
            )
            try:
                for _ in range(self.workers):  # while all are busy, each submit spawns one
                    ex.submit(_hold)
            finally:
                started.set()
        return ex

    def new_array(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array in a file the workers can map, its space reserved."""
        self._executor()
        try:
            return self._new_file(shape)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or self._on_disk:
                raise
            self._unlink(os.path.join(self._dir or "", f"a{self._files}.npy"))
            self._on_disk = True  # shared memory is full: go on in the temp dir
            self._dir = self._new_dir(disk=True)
            return self._new_file(shape)

    def _new_file(self, shape: tuple[int, ...]) -> np.ndarray:
        assert self._dir is not None
        self._files += 1
        path = os.path.join(self._dir, f"a{self._files}.npy")
        self._live.add(path)
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        if hasattr(os, "posix_fallocate"):  # a sparse file in a full tmpfs faults on write
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        return arr

    def submit(self, ctx: StepContext, block: Block) -> list[Future]:
        """Start checking ``block`` (whose arrays came from ``new_array``)."""
        _, HV, K, V = block.pre.shape
        todo = list(pieces(block.rows.size, HV, K, V))
        ex = self._executor()
        return [
            ex.submit(_run_job, ctx, self._job(block, todo[i : i + JOB_PIECES]))
            for i in range(0, len(todo), JOB_PIECES)
        ]

    @staticmethod
    def _job(block: Block, job: list[Piece]) -> _Job:
        r0, r1 = job[0][0].start, job[-1][0].stop  # pieces come in row order
        qkv, a, b, A_log, dt_bias = block.acts
        shifted = [(slice(r.start - r0, r.stop - r0), h) for r, h in job]
        return _Job(
            (qkv[r0:r1], a[r0:r1], b[r0:r1], A_log, dt_bias),
            block.rows[r0:r1],
            block.slots[r0:r1],
            r0,
            block.pre.filename,
            [(o.filename, s.filename) for o, s in block.tested],
            shifted,
        )

    def release(self, block: Block) -> None:
        """Remove a block's files."""
        for arr in [block.pre, *(x for pair in block.tested for x in pair)]:
            self._unlink(arr.filename)

    def release_all(self) -> None:
        for path in list(self._live):
            self._unlink(path)

    def _unlink(self, path: str) -> None:
        self._live.discard(path)
        if os.path.exists(path):
            os.unlink(path)

    def broken(self) -> bool:
        return self._exec is not None and getattr(self._exec, "_broken", False)

    def close(self) -> None:
        if self._exec is not None:
            self._exec.shutdown(wait=True, cancel_futures=True)
            self._exec = None
        self._live.clear()
        for folder, lock in self._dirs:
            shutil.rmtree(folder, ignore_errors=True)
            if lock is not None:
                os.close(lock)
        self._dirs.clear()
        self._dir = None
        self._on_disk = False


_POOL: CheckPool | None = None


def shared_pool() -> CheckPool:
    """This process's pool (a new one after a worker died)."""
    global _POOL
    if _POOL is not None and _POOL.broken():
        _POOL.close()
        _POOL = None
    if _POOL is None:
        _POOL = CheckPool(default_workers())
    return _POOL


def close_shared_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


# --- a whole step --------------------------------------------------------------------


def check_blocks(
    ctx: StepContext,
    total_rows: int,
    tested: int,
    shape: tuple[int, int, int],
    make_block: MakeBlock,
    device: str | ArrayDevice = "cpu",
) -> list[ErrorStats]:
    """Stats of a whole step (``new_stats`` order). ``make_block(live_rows,
    new_array)`` copies one block's arrays into arrays from ``new_array``.

    ``device``: ``"cpu"``, ``"cuda[:N]"`` (see ``harness.check.device``;
    steps below ``DEVICE_MIN_ELEMS`` stay on the host) or an ``ArrayDevice``.
    """
    HV, K, V = shape
    target = check_device.device_for_size(device, total_rows * HV * K * V)
    if target is not None:
        return check_device.check_on_device(ctx, total_rows, tested, shape, make_block, target)
    if total_rows * HV * K * V < POOL_MIN_ELEMS or default_workers() < 2:
        return _check_here(ctx, total_rows, tested, shape, make_block)
    return _check_in_workers(ctx, total_rows, tested, shape, make_block)


def _check_here(ctx, total_rows, tested, shape, make_block) -> list[ErrorStats]:
    totals = new_stats(ctx, tested)
    n = block_rows(tested, *shape, LOCAL_BLOCK_BYTES)
    for start in range(0, total_rows, n):
        rows = np.arange(start, min(start + n, total_rows))
        merge_into(totals, block_stats(ctx, make_block(rows, host_array)))
    return totals


def host_array(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array in this process's memory (for checks that stay here)."""
    return np.empty(shape, np.float32)


def _check_in_workers(ctx, total_rows, tested, shape, make_block) -> list[ErrorStats]:
    pool = shared_pool()
    totals = new_stats(ctx, tested)
    n = block_rows(tested, *shape, BLOCK_BYTES)
    pending: list[tuple[Block, list[Future]]] = []
    try:
        for start in range(0, total_rows, n):
            rows = np.arange(start, min(start + n, total_rows))
            block = make_block(rows, pool.new_array)
            pending.append((block, pool.submit(ctx, block)))
            if len(pending) == 2:
                _collect(pool, totals, *pending.pop(0))
        while pending:
            _collect(pool, totals, *pending.pop(0))
    except BaseException as exc:
        for _, futures in pending:
            for f in futures:
                f.cancel()
        pool.release_all()
        if pool.broken():
            close_shared_pool()
        if isinstance(exc, BrokenProcessPool):
            raise RuntimeError(f"a check worker process died: {exc}") from exc
        raise
    return totals


def _collect(pool: CheckPool, totals: list[ErrorStats], block: Block, futures) -> None:
    try:
        for f in futures:
            merge_into(totals, f.result())
    finally:
        for f in futures:  # after a failure: none of this block's jobs is wanted
            f.cancel()
        pool.release(block)
