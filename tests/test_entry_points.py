"""An installed package registers implementations through the entry-point group.

The "installed package" is a folder with a module and a ``*.dist-info``
directory holding ``entry_points.txt``, exactly what pip leaves in
site-packages, put on ``sys.path`` (in-process) or ``PYTHONPATH`` (for the
command line). Its implementation wraps the oracle, logs each call, and
declares the kv layout unsupported; a second one fails to import the way a
GPU-only kernel does on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.impls import registry
from harness.impls.registry import ImplError, available_impls, load_implementation

REPO = Path(__file__).resolve().parent.parent

DEMO_MODULE = """
import os

from harness.impls.oracle import oracle_decode


def decode(*args, **kwargs):
    log = os.environ.get("GDN_EP_DEMO_LOG")
    if log:
        with open(log, "a") as f:
            f.write("call\\n")
    oracle_decode(*args, **kwargs)


def unsupported(case):
    if case.layout.state_layout == "kv":
        return "gdn-ep-demo has no kv layout"
    return None


decode.unsupported = unsupported
"""

GPU_MODULE = """
raise ImportError("gdn_ep_gpu needs a CUDA device (none present)")
"""

ENTRY_POINTS = """
[gdn_harness.implementations]
ep-demo = gdn_ep_demo:decode
ep-gpu = gdn_ep_gpu:decode
"""

CASES = """
defaults: {tier: cpu, act_dtype: bf16}
cases:
  - name: tiny
    B: 3
    H: 1
    HV: 2
    K: 4
    V: 4
    pool: 4
    slots: {padding: alternate}
    matrix:
      layout.state_layout: [vk, kv]
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A fake site-packages folder holding one installed distribution."""
    root = tmp_path / "site"
    (root / "gdn_ep_demo").mkdir(parents=True)
    (root / "gdn_ep_demo" / "__init__.py").write_text(DEMO_MODULE)
    (root / "gdn_ep_gpu.py").write_text(GPU_MODULE)
    info = root / "gdn_ep_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gdn-ep-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS).lstrip())
    return root


@pytest.fixture
def installed(site: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("gdn_ep_demo", "gdn_ep_gpu"):
        sys.modules.pop(name, None)


def test_installed_package_is_listed_and_loads(installed):
    names = available_impls()
    assert names[:3] == list(registry.BUILTINS)
    assert "ep-demo" in names and "ep-gpu" in names
    impl = load_implementation("ep-demo")
    import gdn_ep_demo

    assert impl.fn is gdn_ep_demo.decode and impl.builtin is False and impl.spec == "ep-demo"


def test_unloadable_entry_point_says_why(installed):
    with pytest.raises(ImplError) as exc:
        load_implementation("ep-gpu")
    msg = str(exc.value)
    assert "ep-gpu" in msg and "gdn_ep_gpu:decode" in msg
    assert "needs a CUDA device (none present)" in msg


def _cli(args: list[str], site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_impls_lists_installed_package(site, tmp_path):
    proc = _cli(["impls"], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert lines["ep-demo"].split()[1] == "available"
    assert "unavailable" in lines["ep-gpu"] and "needs a CUDA device" in lines["ep-gpu"]
    assert lines["oracle"].split()[1] == "available"


def test_cli_run_uses_entry_point(site, tmp_path):
    cases = tmp_path / "cases.yaml"
    cases.write_text(textwrap.dedent(CASES).lstrip())
    log = tmp_path / "calls.log"
    args = ["run", str(cases), "--impl", "ep-demo", "--baseline", "none"]
    args += ["--report-dir", str(tmp_path / "reports"), "--run-name", "ep"]
    proc = _cli(args, site, tmp_path, GDN_EP_DEMO_LOG=str(log))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 0 failed, 1 skipped" in proc.stdout
    results = [
        json.loads(line)
        for line in (tmp_path / "reports" / "ep" / "results.jsonl").read_text().splitlines()
    ]
    by_name = {r["name"]: r for r in results}
    assert by_name["tiny[vk]"]["status"] == "passed" and by_name["tiny[vk]"]["impl"] == "ep-demo"
    assert by_name["tiny[kv]"]["status"] == "skipped"
    assert by_name["tiny[kv]"]["reason"] == "gdn-ep-demo has no kv layout"
    assert log.read_text().count("call") >= 1  # the installed package's code ran
