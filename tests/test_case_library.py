"""The case library under cases/: it loads, it is tagged, it covers every bug
class of docs/design.md, the cpu tier stays cheap, and the gpu and nightly tiers
hold the real model shapes and the limits that only big sizes reach.

Tags: every case has a ``# catches: tag, tag -- what it does`` comment right
above it; the tags come from ``tests/planted/__init__.py``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from harness import inputs as inp_mod
from harness.core.spec import CaseSpec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.planted` is imported from the repository root
    sys.path.append(str(ROOT))

from tests.planted import (  # noqa: E402
    ALL_TAGS,
    CPU_CLASSES,
    GPU_CLASSES,
    bugs,
    tagged_cases,
)

# The cpu tier runs the real kernels under the Triton interpreter and must
# finish within 5 minutes on 2 cores. Measured with 124 cases (work 2.08e6,
# 2030 programs): about 3 minutes. The budgets leave room for ~50% more;
# raise them only with a new measurement of `time gdn-harness run --tier cpu`.
CPU_MAX_CASES = 200
# sum over cases of steps * B * HV * K * V (state elements updated)
CPU_MAX_STATE_WORK = 3_000_000
# sum over cases of steps * B * HV * ceil(V / 32): interpreter programs, the
# better predictor of the interpreter's time (each costs milliseconds)
CPU_MAX_PROGRAMS = 3_000

# Real models (docs/design.md): (H, HV) at TP 1, divided by TP = 1, 2, 4, 8; K = V = 128.
MODELS = {
    "Qwen3-Next-80B/Qwen3.5-35B": (16, 32),
    "Qwen3.5-27B": (16, 48),
    "Qwen3.5-122B/397B": (16, 64),
}
TPS = (1, 2, 4, 8)
BATCHES = (1, 7, 64, 256, 1024)


@cache
def _library() -> tuple[tuple[CaseSpec, frozenset[str] | None], ...]:
    return tuple(
        (spec, None if tags is None else frozenset(tags))
        for spec, tags in tagged_cases(ROOT / "cases")
    )


def _specs(*tiers: str) -> list[CaseSpec]:
    return [spec for spec, _ in _library() if not tiers or spec.tier in tiers]


def _tags(*tiers: str) -> set[str]:
    return {t for spec, tags in _library() if spec.tier in tiers for t in tags or ()}


# --- loading and tagging ---------------------------------------------------------------


def test_every_case_file_validates():
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "validate", "cases"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\d+ cases OK", proc.stdout)


def test_case_ids_are_unique():
    counts = Counter(spec.id for spec in _specs())
    assert not [i for i, n in counts.items() if n > 1]


def test_library_tiers_live_in_their_folders():
    for spec in _specs():
        folder = Path(spec.file).parent.name
        if folder in ("cpu", "gpu", "nightly"):
            assert spec.tier == folder, f"{spec.id} is tier {spec.tier} in cases/{folder}/"


def test_every_case_says_what_it_catches():
    missing = [spec.id for spec, tags in _library() if not tags and _in_library(spec)]
    assert not missing, "cases without a '# catches: tag -- what' comment above them:\n" + (
        "\n".join(missing)
    )
    unknown = {(spec.id, t) for spec, tags in _library() for t in tags or () if t not in ALL_TAGS}
    assert not unknown, f"unknown tags (known: {sorted(ALL_TAGS)}): {sorted(unknown)}"


def _in_library(spec: CaseSpec) -> bool:
    """Cases of cases/cpu, cases/gpu, cases/nightly (regressions carry their own story)."""
    return Path(spec.file).parent.name in ("cpu", "nightly") or spec.file.endswith(
        "gpu/models.yaml"
    )


def test_cpu_tier_covers_every_cpu_bug_class():
    assert _tags("cpu") >= CPU_CLASSES, f"not covered: {sorted(CPU_CLASSES - _tags('cpu'))}"


def test_gpu_tiers_cover_the_big_size_bug_classes():
    have = _tags("gpu", "nightly")
    assert have >= GPU_CLASSES, f"not covered: {sorted(GPU_CLASSES - have)}"


def test_every_planted_bug_models_a_covered_class():
    for name in bugs.PLANTED:
        assert bugs.BUGS[name].bug_class in CPU_CLASSES, name
    assert {bugs.BUGS[n].bug_class for n in bugs.PLANTED} == CPU_CLASSES


# --- the cpu tier: small enough -----------------------------------------------------------


def test_cpu_tier_is_small_enough():
    specs = [s for s in _specs("cpu") if s.expect is None]
    assert len(_specs("cpu")) <= CPU_MAX_CASES
    work = sum(s.steps * s.B * s.HV * s.K * s.V for s in specs)
    programs = sum(s.steps * s.B * s.HV * math.ceil(s.V / 32) for s in specs)
    assert work <= CPU_MAX_STATE_WORK, f"steps*B*HV*K*V summed over the cpu tier: {work}"
    assert programs <= CPU_MAX_PROGRAMS, f"steps*B*HV*ceil(V/32) summed: {programs}"
    for s in specs:
        assert s.B <= 16 and s.HV <= 8 and s.K <= 128 and s.V <= 128, s.id
        assert s.steps <= 16 and s.pool <= 64, s.id


# --- error cases: every reachable validation message ---------------------------------------

# Every message of kernels/validate.py, in source order: a regex over
# "argument: message", and whether an override (harness.inputs.OVERRIDE_KEYS)
# can produce it. A new message there must be added here (the count is checked).
VALIDATION_MESSAGES = [
    (r"^\w+: expected a torch\.Tensor", False),  # inputs are always tensors
    (r"^(state|out): expected \d dims", True),
    (r"^mixed_qkv: last dim must be dense", True),
    (r"^A_log: must be dense \(contiguous\)", True),
    (r"^state_layout: must be one of", True),
    (r"^a: is on meta, but mixed_qkv is on", True),
    (r"^mixed_qkv: dtype must be fp16, bf16 or fp32", False),  # no act-dtype override
    (r"^[ab]: dtype .* differs from mixed_qkv's", False),  # no a/b dtype override
    (r"^(A_log|dt_bias): dtype must be fp32 or the activation dtype", False),  # no override
    (r"^state: dtype must be fp32, bf16 or fp16", False),  # no state-dtype override
    (r"^state_indices: dtype must be int32 or int64", True),
    (r"^out: dtype .* differs from mixed_qkv's", True),
    (r"^state: each slot must be dense", False),  # no override permutes a slot
    (r"^state: stride\(0\)=\d+ is smaller than one slot", False),  # no override shrinks it
    (r"^state: (K|V|HV) must be positive", False),  # the schema requires sizes >= 1
    (r"^(a|out): batch size \d+ differs from mixed_qkv's", True),
    (r"^\w+: has \d+ heads, state has HV=", False),  # no override changes a head count
    (r"^out: shape must be", True),
    (r"^mixed_qkv: width \d+ is not 2\*H\*K \+ HV\*V", True),
    (r"^mixed_qkv: HV=\d+ is not a multiple of H=\d+", True),
    (r"^out: overlaps (state|mixed_qkv)", True),
    (r"^state: overlaps", False),  # no override aliases the state
]


def test_validation_message_table_is_complete():
    source = (ROOT / "kernels" / "validate.py").read_text()
    sites = len(re.findall(r"^\s+fail\(", source, flags=re.MULTILINE))
    assert sites == len(VALIDATION_MESSAGES), (
        f"kernels/validate.py has {sites} fail() calls, the table {len(VALIDATION_MESSAGES)}"
    )


@cache
def _error_messages() -> dict[str, str]:
    """Case id -> the message check_decode_args raises on the case's overridden inputs."""
    from kernels.validate import check_decode_args

    messages = {}
    for spec in _specs("cpu"):
        if spec.expect is None:
            continue
        inputs = inp_mod.apply_overrides(inp_mod.build_inputs(spec), dict(spec.overrides))
        try:
            check_decode_args(*inputs.args(), inputs.state_layout)
        except ValueError as exc:
            messages[spec.id] = str(exc)
        else:
            messages[spec.id] = ""
    return messages


def test_error_cases_raise_their_expected_message():
    specs = {s.id: s for s in _specs("cpu") if s.expect is not None}
    assert specs
    for cid, message in _error_messages().items():
        assert message, f"{cid}: the arguments were accepted"
        assert re.search(specs[cid].expect.match, message), f"{cid}: {message!r}"


@pytest.mark.parametrize(
    "pattern", [p for p, reachable in VALIDATION_MESSAGES if reachable], ids=lambda p: p[:40]
)
def test_every_reachable_validation_message_has_an_error_case(pattern):
    assert any(re.search(pattern, m) for m in _error_messages().values()), pattern


# --- gpu and nightly tiers: the real shapes and the limits ------------------------------------


def test_gpu_tier_has_every_model_at_every_tp_and_batch():
    specs = [s for s in _specs("gpu") if s.K == 128 and s.V == 128 and s.expect is None]
    for model, (H, HV) in MODELS.items():
        for tp in TPS:
            mine = [s for s in specs if (H // tp, HV // tp) == (s.H, s.HV)]
            assert mine, f"{model} at TP{tp} (H={H // tp}, HV={HV // tp}) has no gpu case"
            assert {s.B for s in mine} >= set(BATCHES), (model, tp, sorted({s.B for s in mine}))
            assert {s.state_dtype for s in mine} >= {"fp32", "bf16"}, (model, tp)
            assert {s.act_dtype for s in mine} >= {"bf16"}, (model, tp)
            assert any(s.slots.padding != "none" for s in mine), (model, tp)
            assert any(s.layout.state_slot_pad > 0 for s in mine), (model, tp)
        ends = ((H, HV), (H // 8, HV // 8))  # TP1 and TP8
        layouts = {s.layout.state_layout for s in specs if (s.H, s.HV) in ends}
        assert layouts == {"vk", "kv"}, model


def _slot_elems(s: CaseSpec) -> int:
    return s.HV * s.K * s.V + s.layout.state_slot_pad


def test_nightly_has_a_grid_over_65535():
    assert any(s.B * s.HV > 65535 for s in _specs("nightly"))


def test_nightly_has_a_live_slot_past_2pow31_elements():
    big = [s for s in _specs("nightly") if s.pool * _slot_elems(s) > 2**31]
    assert big, "no state pool over 2**31 elements"
    assert {s.state_dtype for s in big} >= {"fp32", "bf16"}
    for s in big:
        last = max(inp_mod.slot_indices(s))
        assert last * _slot_elems(s) >= 2**31, f"{s.id}: no live slot offset past 2**31"
        assert any(i < 0 for i in inp_mod.slot_indices(s)) or s.slots.padding != "none"


def test_nightly_has_a_1000_step_bf16_fp32_run():
    assert any(
        s.steps >= 1000 and s.act_dtype == "bf16" and s.state_dtype == "fp32"
        for s in _specs("nightly")
    )


def test_nightly_has_the_largest_model_shape():
    assert any((s.B, s.H, s.HV, s.K, s.V) == (1024, 16, 64, 128, 128) for s in _specs("nightly"))


def test_the_nightly_graph_step_selects_every_gpu_case_below_b1024():
    """.ci/nightly-gpu leaves B = 1024 out of CUDA-graph mode with `-k "not 1024"`:
    that holds only while exactly the B = 1024 gpu cases have 1024 in their ids."""
    from harness.cases import load_paths, select

    script = (ROOT / ".ci" / "nightly-gpu").read_text()
    assert 'graph_k="not 1024"' in script and '--cuda-graph -k "$graph_k"' in script
    gpu = select(load_paths([ROOT / "cases"]), tiers={"gpu"})
    chosen = {c.id for c in select(gpu, keyword="not 1024")}
    assert chosen == {c.id for c in gpu if c.B != 1024}
    assert len(chosen) < len(gpu)
