"""The nightly job's script, run with a stand-in for Python: fuzzing overlaps
the case steps, the bench runs alone after everything else, the CUDA-graph
step leaves out B = 1024, and any failing step fails the job."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUB = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
cmd = args[2]  # -m harness <cmd>
name = cmd if cmd in ("fuzz", "bench") else args[args.index("--run-name") + 1]
start = time.time()
if cmd == "fuzz":
    open(os.environ["STUB_LOG"] + ".fuzz-pid", "w").write(str(os.getpid()))
time.sleep(float(os.environ.get("STUB_FUZZ_SLEEP", "1.5")) if cmd == "fuzz" else 0.3)
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({{"name": name, "args": args, "start": start, "end": time.time(),
                        "check_workers": os.environ.get("GDN_CHECK_WORKERS")}}) + "\\n")
sys.exit(1 if name in os.environ.get("STUB_FAIL", "").split(",") else 0)
"""


def job_env(tmp_path: Path, fail: str = "") -> dict[str, str]:
    stub = tmp_path / "python"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PYTHON": str(stub),
        "GDN_REPORTS": str(tmp_path / "reports"),
        "GDN_FUZZ_BUDGET": "5",
        "STUB_LOG": str(tmp_path / "calls.jsonl"),
        "STUB_FAIL": fail,
    }
    env.pop("GDN_CHECK_WORKERS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def run_job(tmp_path: Path, fail: str = "") -> tuple[int, dict[str, dict], str]:
    env = job_env(tmp_path, fail)
    proc = subprocess.run(
        ["bash", str(ROOT / ".ci" / "nightly-gpu")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = Path(env["STUB_LOG"]).read_text().splitlines()
    calls = {c["name"]: c for c in map(json.loads, lines)}
    return proc.returncode, calls, proc.stdout


def test_fuzzing_overlaps_the_case_steps_and_the_bench_runs_alone(tmp_path):
    rc, calls, out = run_job(tmp_path)
    assert rc == 0, out
    assert set(calls) == {"fuzz", "nightly", "nightly-graph", "nightly-sanitize", "bench"}
    fuzz, bench = calls["fuzz"], calls["bench"]
    assert fuzz["start"] < calls["nightly"]["end"]  # started before the first case step ended
    assert calls["nightly"]["start"] < fuzz["end"]  # and did not hold it up
    assert bench["start"] >= max(c["end"] for n, c in calls.items() if n != "bench")
    assert fuzz["check_workers"] is not None and int(fuzz["check_workers"]) >= 1
    assert all(calls[n]["check_workers"] is None for n in ("nightly", "nightly-graph"))
    graph = calls["nightly-graph"]["args"]
    assert graph[graph.index("-k") + 1] == "not 1024" and "--cuda-graph" in graph
    assert "=== fuzz: exit 0" in out  # its log is shown once it is done


def test_a_failing_background_step_fails_the_job(tmp_path):
    rc, calls, out = run_job(tmp_path, fail="fuzz")
    assert rc == 1 and "=== fuzz: exit 1" in out
    assert "bench" in calls  # the other steps still ran


def test_a_failing_case_step_fails_the_job(tmp_path):
    rc, calls, _ = run_job(tmp_path, fail="nightly-graph")
    assert rc == 1 and {"nightly-sanitize", "bench"} <= set(calls)


def test_a_cancelled_job_stops_the_fuzzer(tmp_path):
    env = {**job_env(tmp_path), "STUB_FUZZ_SLEEP": "60"}
    job = subprocess.Popen(
        ["bash", str(ROOT / ".ci" / "nightly-gpu")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = Path(env["STUB_LOG"] + ".fuzz-pid")
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.05)
    fuzz = int(pid_file.read_text())
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=30) != 0
    deadline = time.time() + 10
    while _alive(fuzz) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(fuzz)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_file = Path(f"/proc/{pid}/stat")  # a zombie has exited
    return not (stat_file.exists() and stat_file.read_text().split()[2] == "Z")


def test_the_workflow_shows_a_shard_matrix_that_covers_the_run(capsys):
    """The matrix job runs shards 1..N of one selection; together they are all of it."""
    import yaml

    from harness import cli

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text())
    job = workflow["jobs"]["gpu-shards"]
    shards = job["strategy"]["matrix"]["shard"]
    n = len(shards)
    assert shards == list(range(1, n + 1)) and n > 1
    command = next(s["run"] for s in job["steps"] if "--shard" in s.get("run", ""))
    assert f"--shard ${{{{ matrix.shard }}}}/{n}" in command
    assert "--run-name shard-${{ matrix.shard }}" in command  # a report folder per shard
    words = command.split()
    assert words[:4] == ["python3", "-m", "harness", "run"]
    tiers = [w for i, w in enumerate(words) if words[i - 1] == "--tier"]
    selection = [str(ROOT / "cases"), *(f"--tier={t}" for t in tiers)]

    def listed(*extra: str) -> list[str]:
        assert cli.main(["list", *selection, *extra]) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()]

    whole = listed()
    parts = [listed("--shard", f"{k}/{n}") for k in shards]
    assert whole and sorted(i for p in parts for i in p) == sorted(whole)
    assert sum(map(len, parts)) == len(whole)


def test_the_nightly_job_checks_on_the_gpu_and_fuzzes_as_long_as_the_script_says():
    """tox's gpu environment brings CuPy (without it the check falls back to the
    CPU and the job takes an hour), and the workflow's fuzz budget is the script's."""
    import configparser
    import re

    import yaml

    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "cupy" in tox["testenv:gpu"]["deps"]
    script = (ROOT / ".ci" / "nightly-gpu").read_text()
    (default,) = set(re.findall(r"GDN_FUZZ_BUDGET:-(\d+)", script))
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text())
    inputs = workflow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    assert inputs["fuzz_budget"]["default"] == default
