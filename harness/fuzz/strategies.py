"""Hypothesis strategies over the whole case space, and over broken case files.

Hand-written cases only find the bugs someone thought of. These strategies
draw valid :class:`~harness.core.spec.CaseSpec` objects across every dimension the
kernels must handle (sizes that are not powers of two, head ratios 1 to 8,
batches that are multiples of nothing, every dtype, strided and packed
layouts, both state layouts, padding and slot patterns, value distributions
near the numerically delicate points, several decode steps), so that
``gdn-harness fuzz`` can find the rest and Hypothesis can shrink what it finds
to a minimal case.

Sizes are per tier (:data:`TIER_LIMITS`). The ``cpu`` tier is bounded by the
work the Triton interpreter does: it runs every kernel program in Python
(about 0.04 s each), and a case runs ``B * HV`` programs per call with
``steps + 1`` calls (step 0 runs twice for the determinism check), so
``B * HV * (steps + 1)`` is capped at 16: an example takes about 0.1 to 0.7 s
for one kernel with ``--baseline none``.

Every strategy is composable: ``sizes()``, ``dtypes()``, ``layouts()``,
``slot_specs()``, ``value_specs()`` and ``steps()`` can be used on their own
or combined by ``case_specs()``. ``malformed_case_files()`` draws broken YAML
files together with the error the loader must answer with.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from harness.cases.load import max_live_rows
from harness.core.dtypes import ACT_DTYPES, INDEX_DTYPES, PARAM_DTYPES, STATE_DTYPES
from harness.core.layouts import LAYOUTS
from harness.core.spec import PADDINGS, SLOT_ORDERS, CaseSpec, LayoutSpec, SlotSpec, ValueSpec

FUZZ_FILE = "<fuzz>"  # CaseSpec.file of drawn cases (the saver gives them a real file)
PAD_SLOT_ID = -1


@dataclass(frozen=True)
class SizeLimits:
    """Bounds of the drawn sizes for one tier.

    ``max_programs`` bounds ``B * HV * (steps + 1)``, the kernel programs a
    case runs (None: unbounded); ``max_state_elems`` bounds ``B * HV * K * V``
    so that the float64 oracle stays affordable on the host.
    """

    max_B: int
    max_H: int
    max_ratio: int
    max_HV: int
    max_dim: int
    max_steps: int
    max_pool_extra: int
    max_pad: int
    max_programs: int | None
    max_state_elems: int


TIER_LIMITS: dict[str, SizeLimits] = {
    "cpu": SizeLimits(7, 4, 8, 8, 40, 3, 4, 9, 16, 1 << 16),
    "gpu": SizeLimits(300, 16, 8, 64, 160, 6, 64, 128, None, 1 << 25),
    "nightly": SizeLimits(1100, 32, 8, 64, 160, 12, 256, 256, None, 1 << 27),
}


def limits_for(tier: str) -> SizeLimits:
    """The size limits of ``tier`` (ValueError for an unknown tier)."""
    try:
        return TIER_LIMITS[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}; known: {', '.join(TIER_LIMITS)}") from None


# --------------------------------------------------------------------------
# Valid cases


@cache
def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """``st.integers``, built once per range: composites draw with bounds that
    depend on earlier draws, and building a fresh strategy every draw costs
    more than the oracle run of a small case."""
    return st.integers(lo, max(lo, hi))


_BOOLS = st.booleans()


@cache
def head_dims(max_dim: int) -> st.SearchStrategy[int]:
    """Head dims: any size (tail masks), with powers of two drawn often too."""
    powers = [p for p in (8, 16, 32, 64, 128) if p <= max_dim] or [1]
    return st.one_of(_ints(1, max_dim), st.sampled_from(powers))


@st.composite
def sizes(draw: st.DrawFn, tier: str = "cpu", max_grid: int | None = None) -> dict[str, int]:
    """``B, H, HV, K, V``: head ratio 1 to 8, HV a multiple of H, K == V often.

    ``max_grid`` bounds ``B * HV`` (default: half the tier's program budget,
    leaving room for one decode step plus the determinism rerun). Either the
    batch or the heads are drawn first, so that neither is always squeezed
    to 1 by the other.
    """
    lim = limits_for(tier)
    if max_grid is None and lim.max_programs is not None:
        max_grid = lim.max_programs // 2
    grid = max_grid or lim.max_B * lim.max_HV
    K = draw(head_dims(lim.max_dim))
    # K == V hides a transposed state read from the shapes: draw it often.
    V = K if draw(_BOOLS) else draw(head_dims(lim.max_dim))
    rows_cap = max(1, lim.max_state_elems // (K * V))  # bounds B * HV
    if draw(_BOOLS):
        B = draw(_ints(1, min(lim.max_B, grid, rows_cap)))
        H, HV = _heads(draw, lim, max(1, min(lim.max_HV, grid // B, rows_cap // B)))
    else:
        H, HV = _heads(draw, lim, max(1, min(lim.max_HV, grid, rows_cap)))
        B = draw(_ints(1, min(lim.max_B, grid // HV, rows_cap // HV)))
    return {"B": B, "H": H, "HV": HV, "K": K, "V": V}


def _heads(draw: st.DrawFn, lim: SizeLimits, max_HV: int) -> tuple[int, int]:
    """``(H, HV)`` with ``HV = H * ratio <= max_HV``."""
    ratio = draw(_ints(1, min(lim.max_ratio, max_HV)))
    H = draw(_ints(1, min(lim.max_H, max_HV // ratio)))
    return H, H * ratio


def steps(max_steps: int) -> st.SearchStrategy[int]:
    """Decode steps (state carried forward); 1 is the common case."""
    return _ints(1, max_steps)


@cache
def dtypes() -> st.SearchStrategy[dict[str, str]]:
    """``act_dtype``, ``state_dtype``, ``param_dtype``, ``index_dtype``."""
    return st.fixed_dictionaries(
        {
            "act_dtype": st.sampled_from(ACT_DTYPES),
            "state_dtype": st.sampled_from(STATE_DTYPES),
            "param_dtype": st.sampled_from(PARAM_DTYPES),
            "index_dtype": st.sampled_from(INDEX_DTYPES),
        }
    )


@cache
def layouts(max_pad: int = 9) -> st.SearchStrategy[LayoutSpec]:
    """Row strides wider than the rows, column offsets, packed a/b, both state layouts."""
    pad = _ints(0, max_pad)
    return st.builds(
        LayoutSpec,
        qkv_row_pad=pad,
        qkv_col_offset=pad,
        ab_packed=st.booleans(),
        ab_row_pad=pad,
        state_layout=st.sampled_from(LAYOUTS),
        state_slot_pad=pad,
    )


@st.composite
def _explicit_slots(draw: st.DrawFn, B: int, max_pool_extra: int) -> tuple[SlotSpec, int]:
    """Explicit ``state_indices``: distinct slots anywhere in the pool, -1 for padding."""
    pool = B + draw(_ints(0, max_pool_extra))
    perm = draw(st.permutations(range(pool)))
    padded = [draw(_BOOLS) for _ in range(B)]
    indices = tuple(PAD_SLOT_ID if p else s for p, s in zip(padded, perm[:B], strict=True))
    return SlotSpec(indices=indices), pool


@st.composite
def _named_slots(draw: st.DrawFn, B: int, max_pool_extra: int) -> tuple[SlotSpec, int]:
    """A named padding pattern and slot order, with a pool just big enough or bigger."""
    slots = SlotSpec(
        padding=draw(_PADDINGS),
        pad_fraction=draw(_PAD_FRACTIONS),
        pad_seed=draw(_ints(0, 2**16)),
        order=draw(_ORDERS),
        slot0_live=draw(_BOOLS),
    )
    pool = max(1, max_live_rows(B, slots)) + draw(_ints(0, max_pool_extra))
    return slots, pool


_PADDINGS = st.sampled_from(PADDINGS)
_PAD_FRACTIONS = st.sampled_from((0.25, 0.5, 0.75, 0.0, 1.0))
_ORDERS = st.sampled_from(SLOT_ORDERS)


@cache
def slot_specs(B: int, max_pool_extra: int = 4) -> st.SearchStrategy[tuple[SlotSpec, int]]:
    """``(SlotSpec, pool)`` for a batch of ``B``: named patterns or explicit indices."""
    return st.one_of(_named_slots(B, max_pool_extra), _explicit_slots(B, max_pool_extra))


@cache
def _value(default: float, *others: float) -> st.SearchStrategy[float]:
    """The default first (what shrinking returns to), then chosen extremes."""
    return st.sampled_from((default, *others))


@cache
def gate_means() -> st.SearchStrategy[float]:
    """Mean of ``a``: ordinary, around the softplus threshold of 20, or past
    the fp32 overflow of ``exp`` (x > 88), one regime in three each."""
    return st.one_of(
        st.one_of(_value(0.0, -4.0, 4.0), st.floats(-8.0, 8.0)),
        st.one_of(_value(20.0, 19.5, 20.5), st.floats(19.0, 21.0)),
        st.one_of(_value(90.0, 100.0), st.floats(88.0, 100.0)),
    )


# (a_log_lo, a_log_hi): the default, real models (A in [1, 16]), slow decay
# (where gate errors are not wiped out by a tiny exp(g)), a wide mix, one value.
A_LOG_RANGES = ((-1.0, 1.0), (0.0, 2.77), (-8.0, -3.0), (-4.0, 3.0), (-2.0, -2.0))


_A_LOG = st.sampled_from(A_LOG_RANGES)


@st.composite
def value_specs(draw: st.DrawFn) -> ValueSpec:
    """Input distributions, including tiny q/k norms (L2-norm epsilon), gates
    around the softplus threshold and past exp overflow, and slow decay."""
    lo, hi = draw(_A_LOG)
    return ValueSpec(
        qkv_std=draw(_value(1.0, 0.5, 2.0, 0.1)),
        tiny_qk=draw(_BOOLS),
        tiny_qk_norm=draw(_value(1e-4, 1e-3, 1e-6, 1e-2)),
        gate_mean=draw(gate_means()),
        gate_std=draw(_value(1.0, 0.0, 0.1, 3.0)),
        beta_std=draw(_value(1.0, 0.0, 3.0, 8.0)),
        a_log_lo=lo,
        a_log_hi=hi,
        dt_bias_std=draw(_value(1.0, 0.0, 4.0)),
        state_std=draw(_value(1.0, 0.5, 4.0, 2.0, 0.25, 0.0)),  # 0: a new request
    )


@cache
def scales() -> st.SearchStrategy[float | None]:
    """None (K ** -0.5) or an explicit query scale."""
    return st.one_of(st.none(), _value(1.0, 0.5, 0.125, 2.0), st.floats(0.01, 2.0))


_SIZES = cache(sizes)
_VALUES = cache(value_specs)


@st.composite
def case_specs(draw: st.DrawFn, tier: str = "cpu", name: str = "fuzz") -> CaseSpec:
    """A valid case of ``tier``, sized for that tier (see the module docstring)."""
    lim = limits_for(tier)
    n_steps = draw(steps(lim.max_steps))  # first: multi-step cases get smaller grids
    max_grid = None if lim.max_programs is None else lim.max_programs // (n_steps + 1)
    size = draw(_SIZES(tier, max_grid))
    slots, pool = draw(slot_specs(size["B"], lim.max_pool_extra))
    return CaseSpec(
        file=FUZZ_FILE,
        name=name,
        line=0,
        **size,
        pool=pool,
        **draw(dtypes()),
        layout=draw(layouts(lim.max_pad)),
        slots=slots,
        values=draw(_VALUES()),
        use_qk_l2norm=not draw(_BOOLS),  # shrinks towards the usual True
        scale=draw(scales()),
        steps=n_steps,
        seed=draw(_ints(0, 2**32 - 1)),
        tier=tier,
    )


def programs(spec: CaseSpec) -> int:
    """Kernel programs a case runs per implementation (the interpreter's cost unit)."""
    return spec.B * spec.HV * (spec.steps + 1)


def describe(spec: CaseSpec) -> str:
    """One line that says what a case exercises (for progress output)."""
    lay, sl = spec.layout, spec.slots
    slots = "explicit" if sl.indices is not None else f"{sl.padding}/{sl.order}"
    strides = []
    if lay.qkv_row_pad or lay.qkv_col_offset:
        strides.append(f"qkv+{lay.qkv_col_offset}/{lay.qkv_row_pad}")
    if lay.ab_packed or lay.ab_row_pad:
        strides.append(f"ab{'P' if lay.ab_packed else ''}+{lay.ab_row_pad}")
    if lay.state_slot_pad:
        strides.append(f"slot+{lay.state_slot_pad}")
    return (
        f"B={spec.B} H={spec.H} HV={spec.HV} K={spec.K} V={spec.V} N={spec.pool} "
        f"{spec.act_dtype}/{spec.state_dtype}/{spec.param_dtype}/{spec.index_dtype} "
        f"{lay.state_layout} {' '.join(strides) or 'dense'} slots={slots} steps={spec.steps}"
        f"{_describe_values(spec)}"
    )


def _describe_values(spec: CaseSpec) -> str:
    """The value settings that differ from the defaults, briefly."""
    v, d = spec.values, ValueSpec()
    parts = []
    if v.gate_mean != d.gate_mean:
        parts.append(f"gate={v.gate_mean:.3g}")
    if (v.a_log_lo, v.a_log_hi) != (d.a_log_lo, d.a_log_hi):
        parts.append(f"A_log={v.a_log_lo:g}..{v.a_log_hi:g}")
    if v.tiny_qk:
        parts.append(f"tiny_qk={v.tiny_qk_norm:g}")
    if not spec.use_qk_l2norm:
        parts.append("no-l2norm")
    if spec.scale is not None:
        parts.append(f"scale={spec.scale:.3g}")
    if v.state_std != d.state_std:
        parts.append(f"state_std={v.state_std:g}")
    return (" " + " ".join(parts)) if parts else ""


# --------------------------------------------------------------------------
# Malformed case files

ANY = object()  # an expectation that accepts any value (but a line must exist)


@dataclass(frozen=True)
class MalformedFile:
    """A broken case file and what the loader must say about it.

    ``case``/``field``/``line`` are the expected attributes of the
    ``CaseFileError`` (``ANY``: any value; for ``line`` it must still be a
    number). ``min_line`` bounds the reported line from below where the YAML
    parser may notice a syntax error later than where it was made.
    """

    kind: str
    content: bytes
    case: Any = None
    field: Any = None
    line: Any = None
    min_line: int = 1
    huge: bool = False
    description: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def write(self, directory: str | Path, name: str = "broken.yaml") -> Path:
        """Write the file into ``directory`` and return its path."""
        path = Path(directory) / name
        path.write_bytes(self.content)
        return path


@dataclass
class _Doc:
    """A valid document as nested dicts, before rendering."""

    cases: list[dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)

    def tree(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.defaults:
            out["defaults"] = self.defaults
        out["cases"] = self.cases
        return out


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    """YAML text of a scalar or flat list, read back as exactly that value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def render(tree: dict[str, Any]) -> tuple[list[str], dict[tuple, int]]:
    """Block-style YAML lines of ``tree`` and the 1-based line of every key path."""
    lines: list[str] = []
    where: dict[tuple, int] = {}
    _emit_map(tree, 0, (), lines, where, lead=None)
    return lines, where


def _emit_map(m: dict, indent: int, path: tuple, lines: list[str], where: dict, lead) -> None:
    for i, (key, value) in enumerate(m.items()):
        prefix = lead if (i == 0 and lead is not None) else " " * indent
        here = (*path, key)
        where[here] = len(lines) + 1
        if isinstance(value, dict) and value:
            lines.append(f"{prefix}{key}:")
            _emit_map(value, indent + 2, here, lines, where, None)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{prefix}{key}:")
            for j, item in enumerate(value):
                where[(*here, j)] = len(lines) + 1
                _emit_map(item, indent + 4, (*here, j), lines, where, " " * (indent + 2) + "- ")
        else:
            lines.append(f"{prefix}{key}: {_scalar(value)}")


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


@st.composite
def _valid_case(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A small valid case as a plain dict, with some optional sections."""
    H = draw(st.integers(1, 3))
    case: dict[str, Any] = {"name": name, "B": draw(st.integers(1, 5)), "H": H}
    case["HV"] = H * draw(st.integers(1, 3))
    case["K"] = draw(st.integers(1, 24))
    case["V"] = draw(st.integers(1, 24))
    if draw(st.booleans()):
        case["pool"] = case["B"] + draw(st.integers(0, 3))
    if draw(st.booleans()):
        case["act_dtype"] = draw(st.sampled_from(ACT_DTYPES))
    case["layout"] = {
        "qkv_row_pad": draw(st.integers(0, 8)),
        "ab_packed": draw(st.booleans()),
        "state_layout": draw(st.sampled_from(LAYOUTS)),
        "state_slot_pad": draw(st.integers(0, 8)),
    }
    case["slots"] = {"padding": draw(st.sampled_from(("none", "alternate", "first")))}
    case["values"] = {"qkv_std": 1.0, "a_log_lo": -1.0, "a_log_hi": 1.0, "tiny_qk": False}
    case["steps"] = draw(st.integers(1, 3))
    case["seed"] = draw(st.integers(0, 1000))
    return case


@st.composite
def _valid_doc(draw: st.DrawFn) -> _Doc:
    n = draw(st.integers(1, 3))
    cases = [draw(_valid_case(f"case_{i}")) for i in range(n)]
    defaults = {}
    if draw(st.booleans()):
        defaults = {"tier": "cpu", "state_dtype": draw(st.sampled_from(STATE_DTYPES))}
    return _Doc(cases, defaults)


# Field paths of a case, by kind, with values of the wrong type for each kind.
_INT_FIELDS = ("B", "H", "HV", "K", "V", "steps", "seed", "layout.qkv_row_pad")
_ENUM_FIELDS = ("layout.state_layout", "slots.padding")
_BOOL_FIELDS = ("layout.ab_packed", "values.tiny_qk")
_NUM_FIELDS = ("values.qkv_std", "values.a_log_lo")
_MAP_FIELDS = ("layout", "slots", "values")
_WRONG: dict[str, tuple[Any, ...]] = {
    "int": ("two", 2.5, True, [1, 2], {"x": 1}, None, "0x10"),
    "enum": (3, "fp8", True, ["vk"], "VK", None),
    "bool": ("yes please", 1, 0.5, [True], None),
    "num": ("big", True, [1.0], {"a": 1}, None),
    "map": (3, "vk", [1, 2], True),
}
_UNKNOWN_KEYS = ("Bsize", "colour", "k", "num_heads", "state_dtypes", "padding")
_UNKNOWN_NESTED = (("layout", "row_pad"), ("slots", "pad"), ("values", "sigma"))


def _kind_of(path: str) -> str:
    for kind, fields in (
        ("int", _INT_FIELDS),
        ("enum", _ENUM_FIELDS),
        ("bool", _BOOL_FIELDS),
        ("num", _NUM_FIELDS),
        ("map", _MAP_FIELDS),
    ):
        if path in fields:
            return kind
    raise KeyError(path)


def _set(case: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = case
    for part in parents:
        node = node[part]
    node[last] = value


def _path(i: int, dotted: str) -> tuple:
    return ("cases", i, *dotted.split("."))


@dataclass
class _Fault:
    """One mutation of a valid document: how to apply it and what to expect."""

    kind: str
    field: Any
    description: str
    apply: Callable[[_Doc], None]
    # expected line: a key path of the rendered document, "case" (the case's
    # first line), None (no line) or ANY
    line_of: Any = "field"
    case: Any = "target"
    huge: bool = False


@st.composite
def _field_fault(draw: st.DrawFn, doc: _Doc, i: int) -> _Fault:
    """A wrong type, an unknown field, a missing field, or an impossible value."""
    case = doc.cases[i]
    choice = draw(st.sampled_from(("wrong_type", "unknown", "missing", "impossible")))
    if choice == "wrong_type":
        fields = (*_INT_FIELDS, *_ENUM_FIELDS, *_BOOL_FIELDS, *_NUM_FIELDS, *_MAP_FIELDS)
        dotted = draw(st.sampled_from(fields))
        value = draw(st.sampled_from(_WRONG[_kind_of(dotted)]))
        return _Fault(choice, dotted, f"{dotted}: {value!r}", lambda d: _set(case, dotted, value))
    if choice == "unknown":
        if draw(st.booleans()):
            key = draw(st.sampled_from(_UNKNOWN_KEYS))
            return _Fault(choice, key, f"unknown {key}", lambda d: case.__setitem__(key, 1))
        parent, key = draw(st.sampled_from(_UNKNOWN_NESTED))
        dotted = f"{parent}.{key}"
        return _Fault(choice, dotted, f"unknown {dotted}", lambda d: _set(case, dotted, 1))
    if choice == "missing":
        key = draw(st.sampled_from(("B", "H", "HV", "K", "V", "name")))
        target = ANY if key == "name" else "target"
        return _Fault(choice, key, f"no {key}", lambda d: case.pop(key), "case", target)
    return draw(_impossible(case))


_IMPOSSIBLE: tuple[tuple[str, Any], ...] = (
    ("B", 0),
    ("H", -1),
    ("K", 0),
    ("V", -7),
    ("steps", 0),
    ("pool", 0),
    ("seed", -1),
    ("seed", 2**64),
    ("layout.qkv_row_pad", -3),  # a row stride narrower than the row: rows overlap
    ("layout.state_slot_pad", -1),  # slots overlap
    ("values.qkv_std", -1.0),
    ("slots.padding", "sometimes"),
)


@st.composite
def _impossible(draw: st.DrawFn, case: dict) -> _Fault:
    """Values no case can have: schema-level bounds and the semantic rules."""
    rule = draw(st.sampled_from(("bound", "hv", "a_log", "pool", "indices", "nonfinite")))
    if rule == "bound":
        dotted, value = draw(st.sampled_from(_IMPOSSIBLE))
        return _Fault(
            "impossible", dotted, f"{dotted}: {value!r}", lambda d: _set(case, dotted, value)
        )
    if rule == "hv":
        H = draw(st.integers(2, 4))
        HV = H * draw(st.integers(1, 3)) + draw(st.integers(1, H - 1))

        def hv(d: _Doc) -> None:
            case["H"], case["HV"] = H, HV

        return _Fault("hv-not-multiple", "HV", f"H={H} HV={HV}", hv)
    if rule == "a_log":
        return _Fault(
            "impossible",
            "values.a_log_hi",
            "a_log_hi < a_log_lo",
            lambda d: _set(case, "values.a_log_hi", -2.0),
        )
    if rule == "pool":
        return draw(_small_pool(case))
    if rule == "indices":
        return draw(_bad_indices(case))
    dotted = draw(st.sampled_from(("values.qkv_std", "values.a_log_lo", "values.gate_mean")))
    value = draw(st.sampled_from((float("inf"), float("-inf"), float("nan"))))
    return _Fault("nonfinite", dotted, f"{dotted}: {value}", lambda d: _set(case, dotted, value))


@st.composite
def _small_pool(draw: st.DrawFn, case: dict) -> _Fault:
    """A pool that cannot hold the live rows (padding none)."""
    B = draw(st.integers(2, 6))

    def small(d: _Doc) -> None:
        case["B"], case["pool"] = B, B - 1
        case["slots"] = {"padding": "none"}

    return _Fault("impossible", "pool", f"B={B} pool={B - 1}", small)


@st.composite
def _bad_indices(draw: st.DrawFn, case: dict) -> _Fault:
    """Explicit indices of the wrong length, out of the pool, or naming a slot twice."""
    B = draw(st.integers(2, 5))
    how = draw(st.sampled_from(("length", "range", "duplicate")))
    indices = list(range(B))
    field_: str = "slots.indices"
    if how == "length":
        indices = indices[:-1] if draw(st.booleans()) else [*indices, B]
    elif how == "range":
        row = draw(st.integers(0, B - 1))
        indices[row] = B + draw(st.integers(0, 10**6))
        field_ = f"slots.indices[{row}]"
    else:
        row = draw(st.integers(1, B - 1))
        indices[row] = draw(st.integers(0, row - 1))
        field_ = f"slots.indices[{row}]"

    def apply(d: _Doc) -> None:
        case["B"], case["pool"] = B, B
        case["slots"] = {"indices": indices}

    return _Fault("bad-indices", field_, f"{how}: {indices}", apply, line_of="slots.indices")


# (changes, expected field): the estimate refuses them (field None), except a
# pool no index dtype can address, which is refused first.
HUGE_CHANGES: tuple[tuple[tuple[tuple[str, Any], ...], str | None], ...] = (
    ((("B", 10**9),), None),
    ((("K", 10**6), ("V", 10**6)), None),
    ((("H", 1), ("HV", 10**9)), None),
    ((("B", 10**30),), "index_dtype"),
    ((("pool", 10**13), ("index_dtype", "int64")), None),
    ((("layout.state_slot_pad", 10**15),), None),  # a slot stride past any buffer
    ((("layout.qkv_row_pad", 10**15),), None),  # a row stride past any buffer
    ((("K", 4096), ("V", 4096), ("H", 1), ("HV", 64), ("B", 1024)), None),
)


@st.composite
def _huge(draw: st.DrawFn, doc: _Doc, i: int) -> _Fault:
    """Sizes too large for any machine's memory: refused from the estimate."""
    changes, expected = draw(st.sampled_from(HUGE_CHANGES))
    case = doc.cases[i]

    def apply(d: _Doc) -> None:
        if not any(k == "pool" for k, _ in changes):
            case.pop("pool", None)  # pool defaults to B: no 'pool too small' first
        for dotted, value in changes:
            _set(case, dotted, value)

    what = ", ".join(f"{k}={v}" for k, v in changes)
    return _Fault("huge", expected, what, apply, line_of="case", huge=True)


@st.composite
def _document_fault(draw: st.DrawFn, doc: _Doc, huge: bool) -> tuple[_Fault, int | None]:
    """A fault in a random case (or the defaults), and that case's index."""
    i = draw(st.integers(0, len(doc.cases) - 1))
    if huge:
        return draw(_huge(doc, i)), i
    if doc.defaults and draw(st.integers(0, 5)) == 0:
        key = draw(st.sampled_from(("colour", "name", "act_dtype")))
        value = "fp8" if key == "act_dtype" else "x"
        fault = _Fault(
            "defaults",
            f"defaults.{key}",
            f"defaults.{key}",
            lambda d: d.defaults.update({key: value}),
        )
        fault.case = None
        return fault, None
    if draw(st.integers(0, 6)) == 0:
        return draw(_huge(doc, i)), i
    return draw(_field_fault(doc, i)), i


def _expected_line(fault: _Fault, i: int | None, where: dict[tuple, int]) -> Any:
    if fault.line_of in (None, ANY):
        return fault.line_of
    if fault.line_of == "case":
        return where[("cases", i)]
    if i is None:
        return where[tuple(fault.field.split("."))]
    dotted = fault.field if fault.line_of == "field" else fault.line_of
    dotted = re.sub(r"\[\d+\]$", "", dotted)
    return where[_path(i, dotted)]


@st.composite
def _structured(draw: st.DrawFn, huge: bool = False) -> MalformedFile:
    """A valid document with one structured fault (``huge``: a size fault)."""
    doc = draw(_valid_doc())
    fault, i = draw(_document_fault(doc, huge))
    fault.apply(doc)
    lines, where = render(doc.tree())
    case = None if i is None else doc.cases[i].get("name")
    expect_case = case if fault.case == "target" else fault.case
    return MalformedFile(
        kind=fault.kind,
        content=_text(lines),
        case=expect_case,
        field=fault.field,
        line=_expected_line(fault, i, where),
        huge=fault.huge,
        description=fault.description,
    )


_SYNTAX = (
    "    B: [1, 2",  # unclosed flow sequence
    "\tB: 2",  # a tab cannot indent
    '    name: "unterminated',  # unclosed quote
    "    B: 2: 3",  # mapping values not allowed here
    "    K: *nowhere",  # undefined alias
    "   B: 2",  # misindented key
    "    - B: 2",  # a list item inside a mapping
    "    {B: 2",  # unclosed flow mapping
    "    @B: 2",  # reserved indicator
)


@st.composite
def _syntax_error(draw: st.DrawFn) -> MalformedFile:
    """A valid document with one line that breaks the YAML syntax."""
    doc = draw(_valid_doc())
    lines, _ = render(doc.tree())
    first_case = lines.index(next(ln for ln in lines if ln.startswith("  - ")))
    at = draw(st.integers(first_case + 1, len(lines)))  # 0-based insertion point
    bad = draw(st.sampled_from(_SYNTAX))
    lines.insert(at, bad)
    return MalformedFile(
        kind="yaml-syntax",
        content=_text(lines),
        case=ANY,  # a wrong nesting can still parse, and fail on the case it lands in
        field=ANY,
        line=ANY,
        # the parser may blame the key before the bad line (a valid but wrong nesting)
        min_line=max(1, at),
        description=f"line {at + 1}: {bad!r}",
    )


@st.composite
def _duplicate_key(draw: st.DrawFn) -> MalformedFile:
    """A key repeated inside one case (YAML would silently keep the last)."""
    doc = draw(_valid_doc())
    i = draw(st.integers(0, len(doc.cases) - 1))
    key = draw(st.sampled_from(("B", "K", "steps", "seed")))
    lines, where = render(doc.tree())
    line = where[("cases", i, key)]
    lines.insert(line, lines[line - 1].replace("- ", "  ", 1))  # same indent as the others
    return MalformedFile(
        kind="duplicate-key",
        content=_text(lines),
        case=doc.cases[i]["name"],
        field=key,
        line=line + 1,
        description=f"{key} twice",
    )


@st.composite
def _duplicate_name(draw: st.DrawFn) -> MalformedFile:
    doc = draw(_valid_doc())
    doc.cases.append(dict(doc.cases[0]))
    lines, where = render(doc.tree())
    i = len(doc.cases) - 1
    return MalformedFile(
        kind="duplicate-name",
        content=_text(lines),
        case=doc.cases[0]["name"],
        field="name",
        line=where[("cases", i, "name")],
        description="two cases with one name",
    )


_TOP_LEVEL: tuple[tuple[str, bytes, Any, Any], ...] = (
    # description, content, field, line
    ("empty file", b"", None, ANY),
    ("only a comment", b"# nothing here\n", None, ANY),
    ("a list", b"- name: a\n  B: 1\n", None, 1),
    ("a scalar", b"42\n", None, 1),
    ("no cases", b"defaults: {tier: cpu}\n", "cases", 1),
    ("empty cases", b"cases: []\n", "cases", 1),
    ("cases a mapping", b"cases: {name: a}\n", "cases", 1),
    ("cases of scalars", b"cases:\n  - 3\n", "cases[0]", 2),
    ("unknown top-level key", b"case:\n  - name: a\n", "case", 1),
    ("not UTF-8", b"cases:\n  - name: \xff\xfe\n", None, None),
)


@st.composite
def _top_level(draw: st.DrawFn) -> MalformedFile:
    description, content, field_, line = draw(st.sampled_from(_TOP_LEVEL))
    return MalformedFile(
        kind="document", content=content, field=field_, line=line, description=description
    )


def malformed_case_files() -> st.SearchStrategy[MalformedFile]:
    """Broken case files and the ``CaseFileError`` each must produce.

    Wrong types, missing and unknown fields, impossible sizes and values, HV
    not a multiple of H, row and slot strides that overlap, slot indices that
    run past the pool or name a slot twice, non-finite numbers, YAML syntax
    errors, duplicate keys and case names, broken document structure, and
    sizes too large for any machine (``huge``). Use ``MalformedFile.write``
    to put one in a directory, then ``harness.cases.load.load_file``.
    """
    return _weighted_malformed()


# Most of the space is in the structured faults: half of the draws.
_KINDS = ((_structured, 5), (_syntax_error, 2), (_duplicate_key, 1), (_duplicate_name, 1))


@st.composite
def _weighted_malformed(draw: st.DrawFn) -> MalformedFile:
    """One kind of fault by weight (``one_of`` would weigh the kinds alike)."""
    pick = draw(st.integers(0, sum(w for _, w in _KINDS)))
    for make, weight in _KINDS:
        if pick < weight:
            return draw(make())
        pick -= weight
    return draw(_top_level())


def huge_case_files() -> st.SearchStrategy[MalformedFile]:
    """Valid files but for sizes too large for any machine (a subset of
    :func:`malformed_case_files`), for tests that loading them allocates nothing."""
    return _structured(huge=True)
