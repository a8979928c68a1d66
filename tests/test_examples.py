"""The example adapters in examples/ work as the README and docs say.

``examples/torch_reference.py`` is run the way a user runs an adapter of
their own: by ``module:callable`` from the repository root, through a
script outside the repository exactly like the ``gdn-harness`` console
script (so the current directory is not on ``sys.path`` up front).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMPL = "examples.torch_reference:decode"
# A few cases of the cpu tier: tails, GQA, padding (with slot 0 live), both
# layouts, page-padded pools, strided inputs, a multi-step bf16 state.
KEYWORD = (
    "tail_k3_v5 or gqa_ratio3 or padding_alternate or slot0_live or page_padded_pool "
    "or all_strides or bf16_state_padded_6_steps"
)
TINY_CASES = """
defaults: {tier: cpu}
cases:
  - name: tiny
    B: 4
    H: 1
    HV: 2
    K: 5
    V: 3
    pool: 6
    slots: {padding: alternate, slot0_live: true}
    layout: {qkv_row_pad: 3, ab_packed: true}
    steps: 2
    matrix:
      layout.state_layout: [vk, kv]
"""

# as pip writes a console script: the guard lets worker processes start
CONSOLE_SCRIPT = (
    "import sys\nfrom harness.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n"
)


def _harness_env() -> dict[str, str]:
    env = dict(os.environ)
    try:
        metadata.distribution("gdn-harness")
    except metadata.PackageNotFoundError:  # not installed: find harness/ by path
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_torch_reference_runs_from_the_repo_root(tmp_path):
    if (REPO / "cases" / "cpu").is_dir():
        paths, keyword = ["cases/cpu"], ["-k", KEYWORD]
    else:
        (tmp_path / "tiny.yaml").write_text(textwrap.dedent(TINY_CASES).lstrip())
        paths, keyword = [str(tmp_path / "tiny.yaml")], []
    script = tmp_path / "gdn-harness"
    script.write_text(CONSOLE_SCRIPT)
    cmd = [sys.executable, str(script), "run", *paths, "--impl", IMPL, "--baseline", "none"]
    cmd += [*keyword, "--report-dir", str(tmp_path / "reports"), "--run-name", "example"]
    proc = subprocess.run(
        cmd, cwd=REPO, env=_harness_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((tmp_path / "reports" / "example" / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["passed"] >= 2 and counts["failed"] == counts["crashed"] == 0
    results = (tmp_path / "reports" / "example" / "results.jsonl").read_text().splitlines()
    assert all(json.loads(line)["impl"] == IMPL for line in results)


def test_torch_reference_declares_nothing_unsupported():
    sys.path.insert(0, str(REPO))
    try:
        from examples.torch_reference import decode
    finally:
        sys.path.remove(str(REPO))
    assert decode.unsupported(object()) is None


@pytest.mark.parametrize("name", ["torch_reference.py"])
def test_examples_exist_and_compile(name):
    source = (REPO / "examples" / name).read_text()
    compile(source, name, "exec")
    assert "def decode(" in source and "decode.unsupported = unsupported" in source
