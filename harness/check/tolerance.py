"""The tolerance policy: what error a correct implementation can have.

Two bounds, both from docs/design.md:

* Per element, against the oracle re-run from the implementation's own
  previous state: ``|x - ref| <= ulps * ulp(ref, dtype) + fp32_ulps * eps32 *
  magnitude``. The first term is the final rounding to the output or state
  dtype; the second is fp32 arithmetic, bounded by the oracle's sum of
  absolute terms (so cancellation never makes a correct kernel fail). It is
  tight enough to catch one bf16 rounding of an fp32 intermediate: that
  costs 2**-9 relative, the fp32 budget at K = 128 is 2**-14.
* Drift of a carried state over many steps, against the exact float64
  trajectory, as a budget relative to the baseline's own drift for what the
  implementation carried in, on top of the error it made this step:
  ``drift_test <= drift_factor * (drift_baseline + eps(dtype) * max|ref|) +
  fresh_test``, ``fresh_test`` the largest error of this step against the
  oracle run from its own previous state (which the per-element bound has
  judged). Without it a kernel whose one-step rounding is within its bound
  but a few times the baseline's (a K-term dot product in another order,
  where the state is forgotten at each step) failed for drift that had not
  accumulated at all; a bias that builds up still exceeds it by what it
  carried in.

An infinity is a correct rounding where the oracle's value, moved by at most
the bound, reaches the dtype's overflow threshold: fp16 outputs of real
inputs do overflow, and every correct kernel then writes the same Inf.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.dtypes import DTYPES
from harness.core.spec import Tolerance
from reference.namespace import Array, array_namespace

EPS32 = DTYPES["fp32"].eps
FP32_TINY = 2.0**-126
EXPONENT_FIELD = 0x7FF << 52  # of a float64, as int64 bits

DEFAULT_ULPS = 1.0
DEFAULT_DRIFT_FACTOR = 4.0


def default_fp32_ulps(K: int) -> float:
    """fp32 budget in units of eps32 x magnitude: a K-term dot plus exp/log slack."""
    return 2.0 * K + 256.0


@dataclass(frozen=True)
class ElementTol:
    """The resolved per-element tolerance for one quantity."""

    dtype: str
    ulps: float
    fp32_ulps: float
    drift_factor: float

    def describe(self) -> str:
        return (
            f"|err| <= {self.ulps:g} ulp({self.dtype}) + {self.fp32_ulps:g} eps32 x "
            f"magnitude; drift <= {self.drift_factor:g} x baseline"
        )

    @property
    def overflow(self) -> float:
        return overflow_threshold(self.dtype)

    def drift_budget(self, baseline: float, ref_max: float, fresh: float) -> float:
        """The largest drift allowed beside a baseline that drifted ``baseline``:
        ``ref_max`` is max |exact value|, ``fresh`` the implementation's largest
        error of this step against the oracle from its own previous state (its
        own rounding this step, judged by the per-element bound, never a drift)."""
        return self.drift_factor * (baseline + self.drift_floor(ref_max)) + fresh

    def drift_floor(self, ref_max: float) -> float:
        """One rounding of the dtype at the largest exact value: the least drift
        the budget allows beside a baseline that did not drift at all."""
        return DTYPES[self.dtype].eps * ref_max

    def bound(self, ref: Array, magnitude: Array) -> Array:
        """The per-element bound, in the array module of ``ref``."""
        b = ulp(ref, self.dtype)
        if self.ulps != 1.0:  # a pass over the whole array saved where it is exact anyway
            b *= self.ulps
        b += (self.fp32_ulps * EPS32) * magnitude
        b += FP32_TINY
        return b


def resolve(override: Tolerance, dtype: str, K: int) -> ElementTol:
    """Fill a case's tolerance override with the defaults for ``dtype``."""
    return ElementTol(
        dtype=dtype,
        ulps=DEFAULT_ULPS if override.ulps is None else override.ulps,
        fp32_ulps=default_fp32_ulps(K) if override.fp32_ulps is None else override.fp32_ulps,
        drift_factor=(
            DEFAULT_DRIFT_FACTOR if override.drift_factor is None else override.drift_factor
        ),
    )


def overflow_threshold(dtype: str) -> float:
    """The smallest magnitude that rounds to Inf in ``dtype`` (round to nearest):
    the largest finite value plus half its spacing, 65520 for fp16."""
    d = DTYPES[dtype]
    return 2.0**d.max_exp * (2.0 - 2.0 ** -(d.mant_bits + 1))


def ulp(x: Array, dtype: str) -> Array:
    """Spacing of ``dtype`` numbers at |x| (subnormal spacing below the normal range).

    Read off the float64 exponent bits: ``2 ** (max(E, min_exp) - mantissa_bits)``
    is x's exponent field, raised to ``min_exp``, less the mantissa bits, with
    no sign and no mantissa; worked on in place (three passes on a GPU), in the
    array module of ``x`` (NumPy, or CuPy on a GPU).
    """
    xp = array_namespace(x)
    e = xp.asarray(x, dtype=xp.float64).view(xp.int64) & EXPONENT_FIELD
    d = DTYPES[dtype]
    xp.maximum(e, (d.min_exp + 1023) << 52, out=e)
    e -= d.mant_bits << 52
    return e.view(xp.float64)
