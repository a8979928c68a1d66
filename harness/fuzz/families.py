"""A night's kernel families: most examples reuse a compiled kernel.

On a GPU a fuzz example that brings a new family (``strategies.Family``:
head shapes, dtypes, state layout, L2 norm) compiles the packed kernel and
the baseline's two kernels first, which costs several times the example
itself; with every family fresh, compiling is most of a fuzz run. So a run
can draw its families from a *pool*: the first ``size`` distinct families
that Hypothesis draws under a family seed. Each example then takes a pool
family, except one in ``fresh_one_in``, which draws a fresh one from the
whole space; shrinking goes to the fresh branch, whose family shrinks to the
smallest one. Batch, strides, slots, values and steps vary freely inside a
family, so the pool trades little of the search for many more examples.

The pool depends on the family seed only, never on the run's seed, so an
example database stays valid from one night to the next (its directory is
named after the pool: ``pool_dir``); parallel jobs take seeds ``0, 1, ...``
and so search different pools.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from harness.fuzz.strategies import Family, fresh_families

FRESH_ONE_IN = 8  # one example in this many draws a fresh family
DRAWS_PER_FAMILY = 8  # Hypothesis draws made to find each distinct family of a pool


@cache
def family_pool(tier: str, family_seed: int, size: int) -> tuple[Family, ...]:
    """The first ``size`` distinct families Hypothesis draws from
    ``fresh_families(tier)`` under ``family_seed`` (fewer if the space is smaller)."""
    found: list[Family] = []

    @settings(
        database=None,
        max_examples=size * DRAWS_PER_FAMILY,
        phases=(Phase.generate,),
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @seed(family_seed)
    @given(fresh_families(tier))
    def collect(family: Family) -> None:
        if len(found) < size and family not in found:
            found.append(family)

    collect()
    return tuple(found)


def families(
    tier: str, pool: tuple[Family, ...], fresh_one_in: int = FRESH_ONE_IN
) -> st.SearchStrategy[Family]:
    """A pool family, or one time in ``fresh_one_in`` a fresh one (always fresh
    without a pool)."""
    fresh = fresh_families(tier)
    if not pool:
        return fresh
    pooled = st.sampled_from(pool)

    @st.composite
    def draw_family(draw: st.DrawFn) -> Family:
        return draw(fresh if draw(st.integers(0, fresh_one_in - 1)) == 0 else pooled)

    return draw_family()


def pool_dir(tier: str, family_seed: int, size: int) -> str:
    """The example database subfolder of a pool: examples replay onto the same families."""
    return f"pool-{tier}-{family_seed}-{size}"
