"""The expanded, validated description of one case.

``harness.cases.load`` turns YAML into these objects; everything downstream
(inputs, runner, compare, reports, fuzzing) reads only these. A ``CaseSpec``
is plain data: equal specs build bit-identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.conventions import Conventions
from harness.core.layouts import VK

PADDINGS = ("none", "all", "alternate", "first", "last", "random")
SLOT_ORDERS = ("identity", "reverse", "permutation", "spread")


@dataclass(frozen=True)
class SlotSpec:
    """Which rows are padding and which pool slot each live row names.

    ``indices`` (explicit, -1 for padding) wins over the named pattern.
    Otherwise ``padding`` picks the padding rows (``random`` pads each row
    with probability ``pad_fraction``, drawn from ``pad_seed``), and
    ``order`` assigns distinct slots to the live rows in row order:
    ``identity`` row i -> slot i, ``reverse`` counts down from N-1,
    ``permutation`` is a seeded random choice of distinct slots over the
    whole pool, ``spread`` spaces them evenly over the pool. With
    ``slot0_live`` the first live row is given slot 0 (swapped in if needed).
    """

    indices: tuple[int, ...] | None = None
    padding: str = "none"
    pad_fraction: float = 0.25
    pad_seed: int = 0
    order: str = "identity"
    slot0_live: bool = False


@dataclass(frozen=True)
class LayoutSpec:
    """Strides of the inputs, exactly as serving produces them.

    ``mixed_qkv`` is a column slice ``[qkv_col_offset : qkv_col_offset + D]``
    of a wider buffer whose rows have ``qkv_row_pad`` extra elements.
    ``a`` and ``b`` are either separate buffers with ``ab_row_pad`` extra
    elements per row, or (``ab_packed``) views ``[:, :HV]`` and
    ``[:, HV:2*HV]`` of one ``[B, 2*HV + ab_row_pad]`` buffer. Each state
    slot is followed by ``state_slot_pad`` unused elements.
    """

    qkv_row_pad: int = 0
    qkv_col_offset: int = 0
    ab_packed: bool = False
    ab_row_pad: int = 0
    state_layout: str = VK
    state_slot_pad: int = 0


@dataclass(frozen=True)
class ValueSpec:
    """Distributions the inputs are drawn from (all seeded from the case seed).

    q, k, v ~ N(0, qkv_std); with ``tiny_qk`` q and k are scaled down to
    norms near ``tiny_qk_norm`` (where the L2-norm epsilon dominates).
    a ~ N(gate_mean, gate_std), b ~ N(0, beta_std), A_log ~ U(a_log_lo,
    a_log_hi), dt_bias ~ N(0, dt_bias_std), initial state ~ N(0, state_std).
    """

    qkv_std: float = 1.0
    tiny_qk: bool = False
    tiny_qk_norm: float = 1e-4
    gate_mean: float = 0.0
    gate_std: float = 1.0
    beta_std: float = 1.0
    a_log_lo: float = -1.0
    a_log_hi: float = 1.0
    dt_bias_std: float = 1.0
    state_std: float = 1.0


@dataclass(frozen=True)
class Tolerance:
    """Tolerance policy for one quantity (``out`` or ``state``).

    Per element: ``|x - ref| <= ulps * ulp(ref, dtype) + fp32_ulps * eps32 *
    magnitude`` where magnitude is the oracle's sum of absolute terms.
    Multi-step drift against the exact trajectory, when a baseline runs:
    ``drift_test <= drift_factor * (drift_baseline + eps(dtype) * max|ref|)``.
    ``None`` fields take the per-dtype defaults in ``harness.check.tolerance``.
    """

    ulps: float | None = None
    fp32_ulps: float | None = None
    drift_factor: float | None = None


@dataclass(frozen=True)
class ExpectError:
    """The case must be rejected by the built-in wrappers with this message."""

    match: str  # regular expression searched in str(exception)
    exception: str = "ValueError"


@dataclass(frozen=True)
class CaseSpec:
    """One fully expanded case."""

    file: str
    name: str  # case name, with the matrix variant in brackets if any
    line: int  # YAML line where the case starts
    B: int
    H: int
    HV: int
    K: int
    V: int
    pool: int  # N, slots in the state pool
    act_dtype: str = "bf16"
    state_dtype: str = "fp32"
    param_dtype: str = "fp32"
    index_dtype: str = "int32"
    layout: LayoutSpec = field(default_factory=LayoutSpec)
    slots: SlotSpec = field(default_factory=SlotSpec)
    values: ValueSpec = field(default_factory=ValueSpec)
    use_qk_l2norm: bool = True
    scale: float | None = None  # None: K ** -0.5
    steps: int = 1
    seed: int = 0
    tier: str = "cpu"
    tol_out: Tolerance = field(default_factory=Tolerance)
    tol_state: Tolerance = field(default_factory=Tolerance)
    expect: ExpectError | None = None
    # conventions the case pins, as (key, value) pairs (docs/design.md section 3)
    conventions: tuple[tuple[str, str], ...] = ()
    # Raw argument overrides for error cases, applied after the inputs are
    # built: e.g. {"out_dtype": "fp32"} or {"state_layout": "xy"}. See
    # harness.inputs.overrides.OVERRIDE_KEYS for the keys.
    overrides: tuple[tuple[str, object], ...] = ()
    field_lines: tuple[tuple[str, int], ...] = ()  # field path -> YAML line

    @property
    def id(self) -> str:
        """pytest-style id: ``file.yaml::name``."""
        return f"{self.file}::{self.name}"

    @property
    def effective_scale(self) -> float:
        return self.K**-0.5 if self.scale is None else self.scale

    @property
    def qkv_width(self) -> int:
        return 2 * self.H * self.K + self.HV * self.V

    def pinned_against(self, declared: Conventions) -> str | None:
        """Why an implementation with ``declared`` conventions cannot run this case."""
        wrong = [f"{k}={v}" for k, v in self.conventions if getattr(declared, k) != v]
        if not wrong:
            return None
        return (
            f"the case pins {', '.join(wrong)}; the implementation's conventions are "
            f"{declared.describe()} (--pad / --pad-output declare others)"
        )

    def line_of(self, path: str) -> int:
        """YAML line of a field (dotted path), falling back to the case's line."""
        return dict(self.field_lines).get(path, self.line)
