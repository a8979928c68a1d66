"""Checking big steps in worker processes: the same statistics as in this
process, no file left behind on success, on an error or when a worker dies,
and an isolated case worker that used the pool exits on its own."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_step_check import _block, _plant, _same

from harness.check import pool as cp
from harness.check import step as sc
from harness.core.spec import CaseSpec
from harness.run.isolate import IsolatedRunner

ROOT = Path(__file__).resolve().parents[1]
R, HV, K, V = 6, 4, 64, 48
PER_ROW = 3 * HV * K * V * 4 + 2 * HV * V * 4  # pre + 2 x (state, out), float32


@pytest.fixture
def pool(monkeypatch):
    """Big-step checking forced on for small steps, over two workers."""
    monkeypatch.setattr(cp, "POOL_MIN_ELEMS", 0)
    monkeypatch.setattr(cp, "default_workers", lambda: 2)
    monkeypatch.setattr(cp, "BLOCK_BYTES", 2 * PER_ROW)  # two rows a block
    cp.close_shared_pool()
    yield cp.shared_pool()
    cp.close_shared_pool()


def _folders_of(pid: int) -> list[str]:
    """The scratch folders of process ``pid``."""
    pattern = f"{cp.SCRATCH_PREFIX}{pid}-*"
    return [p for root in cp._scratch_roots() for p in glob.glob(os.path.join(root, pattern))]


def _maker(whole: sc.Block, files: list[str], fail_at: int | None = None):
    """make_block for rows of ``whole``, recording every file it fills."""

    def make_block(chunk: np.ndarray, new_array) -> sc.Block:
        if fail_at is not None and chunk[0] >= fail_at:
            raise RuntimeError("planted failure while copying a block")
        part = sc.Block(
            tuple(x[chunk] for x in whole.acts[:3]) + whole.acts[3:],
            whole.rows[chunk],
            whole.slots[chunk],
            new_array(whole.pre[chunk].shape),
        )
        part.pre[:] = whole.pre[chunk]
        files.append(part.pre.filename)
        for out, state in whole.tested:
            o, s = new_array(out[chunk].shape), new_array(state[chunk].shape)
            o[:], s[:] = out[chunk], state[chunk]
            part.tested.append((o, s))
            files.extend([o.filename, s.filename])
        return part

    return make_block


def test_workers_give_the_in_process_result_and_leave_no_file(pool):
    ctx, whole = _block(R=R, HV=HV, K=K, V=V)
    _plant(whole)
    files: list[str] = []
    got = cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole, files))
    assert len(files) == 15  # three blocks of five arrays went through files
    assert len(pool._exec._processes) == 2  # to the two workers
    assert not any(os.path.exists(p) for p in files)
    for g, w in zip(got, sc.block_stats(ctx, whole), strict=True):
        _same(g, w)
    assert got[3].over == 1 and str(got[3].worst_at) == "row 8 slot 104 head 3 k=10 v=7"


def test_an_error_while_copying_leaves_no_file(pool):
    ctx, whole = _block(R=R, HV=HV, K=K, V=V)
    files: list[str] = []
    with pytest.raises(RuntimeError, match="planted failure"):
        cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole, files, fail_at=4))
    assert len(files) == 10 and not any(os.path.exists(p) for p in files)


def test_a_worker_dying_mid_step_fails_that_check_only(pool):
    ctx, whole = _block(R=R, HV=HV, K=K, V=V)
    files: list[str] = []
    inner = _maker(whole, files)

    def make_block(chunk, new_array):
        if chunk[0] == 2:  # the first block's jobs are out: kill a worker under them
            os.kill(next(iter(pool._exec._processes)), signal.SIGKILL)
        return inner(chunk, new_array)

    with pytest.raises(RuntimeError, match="a check worker process died"):
        cp.check_blocks(ctx, R, 2, (HV, K, V), make_block)
    assert files and not any(os.path.exists(p) for p in files)
    got = cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole, []))
    assert cp.shared_pool() is not pool  # new workers
    for g, w in zip(got, sc.block_stats(ctx, whole), strict=True):
        _same(g, w)


def test_a_worker_that_died_between_steps_is_replaced(pool):
    ctx, whole = _block(R=R, HV=HV, K=K, V=V)
    cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole, []))
    os.kill(next(iter(pool._exec._processes)), signal.SIGKILL)
    deadline = time.time() + 10
    while not pool.broken() and time.time() < deadline:
        time.sleep(0.05)
    got = cp.check_blocks(ctx, R, 2, (HV, K, V), _maker(whole, []))
    assert cp.shared_pool() is not pool
    for g, w in zip(got, sc.block_stats(ctx, whole), strict=True):
        _same(g, w)


def test_starting_workers_leaves_the_blas_settings_alone(pool, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    pool.new_array((1,))
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_only_folders_whose_owner_ended_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(cp, "_scratch_roots", lambda: [str(tmp_path)])
    ended = tmp_path / f"{cp.SCRATCH_PREFIX}111-a"
    ended.mkdir()
    locker = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
        "fcntl.flock(fd, fcntl.LOCK_EX)"
    )
    subprocess.run([sys.executable, "-c", locker, str(ended / cp.LOCK_NAME)], check=True)
    live = tmp_path / f"{cp.SCRATCH_PREFIX}111-b"  # the same pid, reused by a live owner
    live.mkdir()
    held = cp._lock(str(live))
    unlocked = tmp_path / f"{cp.SCRATCH_PREFIX}222-c"  # no lock file yet: being made
    unlocked.mkdir()
    try:
        cp.remove_scratch(222)
        assert sorted(p.name for p in tmp_path.iterdir()) == [ended.name, live.name, unlocked.name]
        cp.remove_scratch()
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, unlocked.name]
    finally:
        os.close(held)
    cp.remove_scratch(111)
    assert sorted(p.name for p in tmp_path.iterdir()) == [unlocked.name]


def test_an_isolated_worker_that_used_the_pool_exits_promptly():
    spec = CaseSpec(
        file="<test>", name="big_step", line=1, B=128, H=2, HV=4, K=128, V=128, pool=128
    )
    assert spec.B * spec.HV * spec.K * spec.V >= cp.POOL_MIN_ELEMS
    runner = IsolatedRunner("oracle", None, "cpu", 300.0, check_workers=2)
    result = runner.run(spec)
    pid = runner.proc.pid
    assert result.status == "passed", result.reason
    start = time.perf_counter()
    runner.close()
    assert time.perf_counter() - start < 8.0  # it returned, it was not killed after 10 s
    assert _folders_of(pid) == []


def test_full_shared_memory_falls_back_to_the_temp_dir(pool, monkeypatch):
    import errno

    real = os.posix_fallocate
    calls = []

    def fallocate(fd, offset, length):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    arr = pool.new_array((4, 3))
    arr[:] = 1.0
    assert pool._on_disk and len(pool._dirs) == 2
    assert os.path.dirname(arr.filename) == pool._dir
    assert not glob.glob(os.path.join(pool._dirs[0][0], "*.npy"))  # the failed file went
    dirs = [folder for folder, _ in pool._dirs]
    pool.close()
    assert not any(os.path.exists(d) for d in dirs)


def test_workers_run_one_blas_thread_each(pool, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    pool.new_array((1,))  # starts the workers
    seen = {pool._exec.submit(os.getenv, "OMP_NUM_THREADS").result() for _ in range(8)}
    assert seen == {"1"} and os.environ["OMP_NUM_THREADS"] == "3"


CHILD = """
import multiprocessing as mp
import sys
import time

sys.path.insert(0, {tests!r})


def use_the_pool_then_fail():
    from harness.check import pool as cp
    from test_step_check import _block

    cp.POOL_MIN_ELEMS = 0
    cp.default_workers = lambda: 2
    ctx, whole = _block()
    R, HV, K, V = whole.pre.shape

    def make_block(chunk, new_array):
        block = type(whole)(whole.acts, whole.rows, whole.slots, new_array(whole.pre.shape))
        block.pre[:] = whole.pre
        for out, state in whole.tested:
            o, s = new_array(out.shape), new_array(state.shape)
            o[:], s[:] = out, state
            block.tested.append((o, s))
        return block

    cp.check_blocks(ctx, R, 2, (HV, K, V), make_block)
    if len(sys.argv) > 1:  # stay, to be killed
        print("ready", flush=True)
        time.sleep(60)
    raise RuntimeError("the case worker fails after using the pool")


if __name__ == "__main__" and len(sys.argv) > 1:
    use_the_pool_then_fail()


if __name__ == "__main__" and len(sys.argv) == 1:
    child = mp.get_context("spawn").Process(target=use_the_pool_then_fail)
    child.start()
    child.join(timeout=30)
    print(child.pid, child.exitcode, flush=True)
    if child.is_alive():
        child.kill()
"""


def test_a_spawned_process_that_used_the_pool_exits_promptly_and_cleanly(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    pid, code = proc.stdout.split()
    assert code == "1"  # it ended (raised), not still waiting for its check workers
    assert time.perf_counter() - start < 30
    pid = int(pid)
    assert _folders_of(pid) == []


def test_the_files_of_a_killed_owner_are_reaped(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    owner = subprocess.Popen(
        [sys.executable, str(script), "stay"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        mine = _folders_of(owner.pid)
        assert mine  # the pool's folder exists while its owner lives
        cp.remove_scratch(owner.pid)
        assert all(os.path.exists(p) for p in mine)  # a live owner's folder stays
    finally:
        owner.kill()
        owner.wait()
    cp.remove_scratch(owner.pid)
    assert not any(os.path.exists(p) for p in mine)
