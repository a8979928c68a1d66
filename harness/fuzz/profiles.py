"""Hypothesis profiles: ``ci`` for the test suite, ``nightly`` for long fuzzing.

Every Hypothesis run of the project takes its settings from one of these
profiles so that CI results are reproducible and nightly runs accumulate
what they learn:

- ``ci``: derandomized (the same examples on every machine and every run, so
  a red CI is never a coin toss), a bounded number of examples, no deadline
  (the Triton interpreter's timing varies by an order of magnitude between
  machines), no example database (nothing written into the checkout).
- ``nightly``: random, a long example budget, and an example database under
  ``reports/hypothesis-db`` (``$GDN_HYPOTHESIS_DB`` overrides it) so that a
  failure found one night is replayed first the next night, until fixed.

Profiles are registered when this module is imported (Hypothesis wants them
registered at module level). ``get_settings(name)`` returns one without
changing the global profile; ``load_profile(name)`` makes it the default for
every ``@given`` test of the process (a conftest would call that).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

CI, NIGHTLY, DEFAULT = "ci", "nightly", "default"
PROFILES = (CI, NIGHTLY)
PROFILE_ENV = "GDN_HYPOTHESIS_PROFILE"
DB_ENV = "GDN_HYPOTHESIS_DB"
DEFAULT_DB_DIR = Path("reports") / "hypothesis-db"

CI_MAX_EXAMPLES = 200
NIGHTLY_MAX_EXAMPLES = 20_000
# Wall-clock budgets (seconds) that `gdn-harness fuzz` applies per profile
# when --budget is not given: Hypothesis itself only bounds example counts.
FUZZ_BUDGETS: dict[str, float | None] = {CI: 120.0, NIGHTLY: 4 * 3600.0, DEFAULT: None}
# Kernel families per fuzz run (harness.fuzz.families) when --families is not given:
# the nightly profile spends its time running cases rather than compiling kernels.
FAMILY_POOLS: dict[str, int] = {NIGHTLY: 32}

# Slow examples are expected (Triton interpreter), never a reason to stop.
SLOW_OK = (HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large)
# The explain phase reruns every failure many times to annotate it: too costly here.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


def db_dir() -> Path:
    """Where the nightly example database lives (relative to the working directory)."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB_DIR)


def _register() -> None:
    settings.register_profile(
        CI,
        derandomize=True,
        database=None,
        max_examples=CI_MAX_EXAMPLES,
        deadline=None,
        print_blob=False,
        suppress_health_check=SLOW_OK,
        phases=PHASES,
    )
    settings.register_profile(
        NIGHTLY,
        derandomize=False,
        database=DirectoryBasedExampleDatabase(db_dir()),  # created on first save
        max_examples=NIGHTLY_MAX_EXAMPLES,
        deadline=None,
        print_blob=True,
        suppress_health_check=SLOW_OK,
        phases=PHASES,
    )


_register()


def get_settings(name: str) -> settings:
    """The settings of profile ``name`` (``default``: Hypothesis's own, no database)."""
    if name == DEFAULT:
        return settings(settings.get_profile("default"), database=None, phases=PHASES)
    if name not in PROFILES:
        raise ValueError(f"unknown Hypothesis profile {name!r}; known: {', '.join(PROFILES)}")
    return settings.get_profile(name)


def load_profile(name: str) -> settings:
    """Make profile ``name`` the process-wide default (for a conftest) and return it."""
    get_settings(name)  # validates the name
    settings.load_profile(name)
    return settings.default


def profile_from_env(fallback: str = DEFAULT) -> str:
    """The profile named by ``$GDN_HYPOTHESIS_PROFILE``, else ``fallback``."""
    return os.environ.get(PROFILE_ENV) or fallback
