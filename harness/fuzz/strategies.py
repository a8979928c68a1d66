"""Hypothesis strategies over the whole space of valid cases.

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

Every strategy is composable: ``head_shapes()``, ``dtypes()``,
``fresh_families()``, ``layouts()``, ``slot_specs()``, ``value_specs()`` and
``steps()`` can be used on their own or combined by ``case_specs()``.
(Broken case files, which only the tests draw, are in ``tests/malformed.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from hypothesis import strategies as st

from harness.cases import max_live_rows
from harness.core.dtypes import ACT_DTYPES, INDEX_DTYPES, PARAM_DTYPES, STATE_DTYPES
from harness.core.layouts import LAYOUTS, PAD_SLOT_ID
from harness.core.spec import PADDINGS, SLOT_ORDERS, CaseSpec, LayoutSpec, SlotSpec, ValueSpec

FUZZ_FILE = "<fuzz>"  # CaseSpec.file of drawn cases (the saver gives them a real file)


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


@dataclass(frozen=True)
class Family:
    """What selects a kernel compilation: head counts and dims (the kernels'
    compile-time constants), the dtypes (their pointer types), the state
    layout and the L2-norm switch. Everything else a case varies (batch,
    strides, slots, values, steps) reaches a compiled kernel as arguments, so
    cases of one family after the first cost no compilation."""

    H: int
    HV: int
    K: int
    V: int
    act_dtype: str
    state_dtype: str
    param_dtype: str
    index_dtype: str
    state_layout: str
    use_qk_l2norm: bool

    def dims(self) -> dict[str, int]:
        return {"H": self.H, "HV": self.HV, "K": self.K, "V": self.V}

    def dtypes(self) -> dict[str, str]:
        names = ("act_dtype", "state_dtype", "param_dtype", "index_dtype")
        return {n: getattr(self, n) for n in names}


@st.composite
def head_shapes(draw: st.DrawFn, tier: str = "cpu") -> dict[str, int]:
    """``H, HV, K, V``: head ratio 1 to 8, HV a multiple of H, K == V often,
    with room left in the tier's program budget for one decode step and the
    determinism rerun of a batch of one."""
    lim = limits_for(tier)
    grid = lim.max_B * lim.max_HV if lim.max_programs is None else lim.max_programs // 2
    K = draw(head_dims(lim.max_dim))
    # K == V hides a transposed state read from the shapes: draw it often.
    V = K if draw(_BOOLS) else draw(head_dims(lim.max_dim))
    rows_cap = max(1, lim.max_state_elems // (K * V))  # bounds B * HV
    cap = min(lim.max_HV, grid, rows_cap)
    if draw(_BOOLS):  # leave room for a batch, so that the heads do not always squeeze it to 1
        cap = min(cap, grid // draw(_ints(1, min(lim.max_B, grid))))
    H, HV = _heads(draw, lim, max(1, cap))
    return {"H": H, "HV": HV, "K": K, "V": V}


@cache
def fresh_families(tier: str = "cpu") -> st.SearchStrategy[Family]:
    """Any family of ``tier``: head shapes, dtypes, state layout, L2 norm."""

    @st.composite
    def draw_family(draw: st.DrawFn) -> Family:
        return Family(
            **draw(head_shapes(tier)),
            **draw(dtypes()),
            state_layout=draw(_STATE_LAYOUTS),
            use_qk_l2norm=not draw(_BOOLS),  # shrinks towards the usual True
        )

    return draw_family()


def _max_steps(lim: SizeLimits, HV: int) -> int:
    """Steps a case of ``HV`` value heads may take within the program budget."""
    if lim.max_programs is None:
        return lim.max_steps
    return max(1, min(lim.max_steps, lim.max_programs // HV - 1))


def _max_batch(lim: SizeLimits, family: Family, n_steps: int) -> int:
    cap = min(lim.max_B, max(1, lim.max_state_elems // (family.K * family.V)) // family.HV)
    if lim.max_programs is not None:
        cap = min(cap, lim.max_programs // ((n_steps + 1) * family.HV))
    return max(1, cap)


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


_STATE_LAYOUTS = st.sampled_from(LAYOUTS)


@cache
def layouts(max_pad: int = 9, state_layout: str | None = None) -> st.SearchStrategy[LayoutSpec]:
    """Row strides wider than the rows, column offsets, packed a/b, both state
    layouts (or the one given)."""
    pad = _ints(0, max_pad)
    return st.builds(
        LayoutSpec,
        qkv_row_pad=pad,
        qkv_col_offset=pad,
        ab_packed=st.booleans(),
        ab_row_pad=pad,
        state_layout=_STATE_LAYOUTS if state_layout is None else st.just(state_layout),
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


_VALUES = cache(value_specs)


@st.composite
def case_specs(
    draw: st.DrawFn,
    tier: str = "cpu",
    name: str = "fuzz",
    families: st.SearchStrategy[Family] | None = None,
) -> CaseSpec:
    """A valid case of ``tier``, sized for that tier (see the module docstring).

    The family comes first (``families``, default ``fresh_families(tier)``):
    a fuzzer that draws it from a few families spends its time running cases
    instead of compiling kernels (``harness.fuzz.families``).
    """
    lim = limits_for(tier)
    family = draw(fresh_families(tier) if families is None else families)
    n_steps = draw(steps(_max_steps(lim, family.HV)))
    B = draw(_ints(1, _max_batch(lim, family, n_steps)))
    slots, pool = draw(slot_specs(B, lim.max_pool_extra))
    return CaseSpec(
        file=FUZZ_FILE,
        name=name,
        line=0,
        B=B,
        **family.dims(),
        pool=pool,
        **family.dtypes(),
        layout=draw(layouts(lim.max_pad, family.state_layout)),
        slots=slots,
        values=draw(_VALUES()),
        use_qk_l2norm=family.use_qk_l2norm,
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
