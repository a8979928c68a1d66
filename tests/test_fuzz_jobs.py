"""Family pools (harness.fuzz.families) and parallel fuzz jobs (harness.fuzz.jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings

from harness.fuzz import command as fuzz_mod
from harness.fuzz import profiles
from harness.fuzz.families import FRESH_ONE_IN, families, family_pool
from harness.fuzz.jobs import job_argv, job_options
from harness.fuzz.strategies import TIER_LIMITS, Family, case_specs, programs

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CI = profiles.get_settings(profiles.CI)


def _family(spec) -> Family:
    return Family(
        spec.H,
        spec.HV,
        spec.K,
        spec.V,
        spec.act_dtype,
        spec.state_dtype,
        spec.param_dtype,
        spec.index_dtype,
        spec.layout.state_layout,
        spec.use_qk_l2norm,
    )


def test_a_pool_is_the_same_for_a_seed_distinct_and_within_the_tier():
    pool = family_pool("cpu", 3, 16)
    assert pool == family_pool.__wrapped__("cpu", 3, 16)  # drawn again, not from the cache
    assert len(pool) == 16 and len(set(pool)) == 16
    assert pool != family_pool("cpu", 4, 16)
    lim = TIER_LIMITS["cpu"]
    for f in pool:
        assert f.HV % f.H == 0 and max(f.K, f.V) <= lim.max_dim and lim.max_HV >= f.HV


def test_cases_drawn_with_a_pool_mostly_reuse_its_families():
    pool = family_pool("cpu", 0, 8)
    seen: list[Family] = []

    @settings(CI, max_examples=200)
    @given(spec=case_specs(families=families("cpu", pool)))
    def collect(spec) -> None:
        assert programs(spec) <= TIER_LIMITS["cpu"].max_programs
        seen.append(_family(spec))

    collect()
    pooled = sum(f in pool for f in seen)
    assert pooled >= len(seen) * (1 - 2 / FRESH_ONE_IN)  # about one in FRESH_ONE_IN is fresh
    assert len(set(seen)) < len(seen) / 3
    assert len(set(seen) - set(pool)) >= 3  # but fresh families are drawn too


def test_without_a_pool_every_family_is_fresh():
    seen = set()

    @settings(CI, max_examples=100)
    @given(spec=case_specs(families=families("cpu", ())))
    def collect(spec) -> None:
        seen.add(_family(spec))

    collect()
    assert len(seen) > 50


def test_the_nightly_profile_fuzzes_with_a_pool_and_says_so_in_its_command():
    opts = fuzz_mod.FuzzOptions(impl="oracle", profile=profiles.NIGHTLY, family_seed=2)
    fuzzer = fuzz_mod.Fuzzer(opts, *_impls())
    assert fuzzer.pool_size == profiles.FAMILY_POOLS[profiles.NIGHTLY]
    assert str(fuzzer.settings().database.path).endswith("pool-cpu-2-32")
    assert "--family-seed 2" in fuzzer.command()
    plain = fuzz_mod.Fuzzer(fuzz_mod.FuzzOptions(impl="oracle"), *_impls())
    assert plain.pool_size == 0 and "--famil" not in plain.command()


def _impls():
    from harness.impls.registry import load_implementation

    return load_implementation("oracle"), None


def test_a_stop_file_stops_generating(tmp_path):
    stop = tmp_path / "stop"
    stop.touch()
    opts = fuzz_mod.FuzzOptions(impl="oracle", baseline=None, max_examples=50, stop_file=stop)
    report = fuzz_mod.Fuzzer(opts, *_impls()).run()
    assert report.stop_reason == fuzz_mod.STOPPED_BY_ANOTHER_JOB and report.generated <= 1


def test_a_job_s_command_line_parses_back_to_its_options(tmp_path):
    opts = fuzz_mod.FuzzOptions(
        impl="oracle",
        baseline="none",
        pad="nonpositive",
        max_examples=7,
        budget=2.5,
        seed=10,
        save_dir=tmp_path,
        profile="ci",
        families=4,
        family_seed=1,
        jobs=3,
        quiet=True,
    )
    job = job_options(opts, 2, tmp_path / "stop", tmp_path / "r.json")
    from harness.cli import build_parser

    argv = job_argv(job)[3:]
    args = build_parser(argv).parse_args(argv)
    assert fuzz_mod._options(args) == job
    assert (job.seed, job.family_seed, job.jobs, job.job) == (12, 3, 1, 2)


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "harness", "fuzz", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
        timeout=600,
    )


def test_jobs_add_up_and_a_failure_found_by_one_is_saved(tmp_path):
    save = tmp_path / "saved"
    args = ["--impl", "fixtures_impls:decode_zero", "--baseline", "none", "--seed", "11"]
    proc = _run([*args, "--jobs", "2", "--save-dir", str(save), "-q"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fuzz: 2 jobs, " in proc.stdout and "failure(s) saved" in proc.stdout
    assert "fuzz: job 0: " in proc.stdout and "fuzz: job 1: " in proc.stdout
    assert list(save.glob("fuzz-*.yaml"))


def test_a_job_that_dies_is_reported_and_fails_the_run(tmp_path):
    args = ["--impl", "fixtures_crash:die", "--baseline", "none", "--max-examples", "3"]
    proc = _run([*args, "--jobs", "2", "--save-dir", str(tmp_path), "-q"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "job 0 died (exit 77) before reporting" in proc.stdout
    assert "2 job(s) died" in proc.stdout


def test_jobs_without_failures_pass(tmp_path):
    args = ["--impl", "oracle", "--baseline", "none", "--max-examples", "5", "--families", "2"]
    proc = _run([*args, "--jobs", "2", "--save-dir", str(tmp_path)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 jobs, 10 examples" in proc.stdout and "no failure" in proc.stdout
    assert "fuzz[1]: #1 " in proc.stderr


def _alive_with(text: str) -> list[int]:
    """Pids of processes whose command line holds ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_text(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_sigterm_ends_every_job(tmp_path):
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    args = ["--impl", "fixtures_crash:hang", "--baseline", "none", "--jobs", "2", "-q"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "harness", "fuzz", *args, "--save-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
    )
    first = parent.stdout.readline()
    stop_file = first.split("--stop-file ")[1].split()[0]
    deadline = time.monotonic() + 120
    while len(_alive_with(stop_file)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_alive_with(stop_file)) == 2, first
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while _alive_with(stop_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive_with(stop_file) == []
