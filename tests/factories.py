"""The one way the harness's own tests make a ``CaseSpec``.

Tests name only the fields they are about; everything else takes a small,
valid default (a cpu-tier case that builds in milliseconds). Nested specs
can be given as objects or as keyword dicts: ``spec(slots={"padding": "all"})``.
"""

from __future__ import annotations

from typing import Any

from harness.core.spec import CaseSpec, LayoutSpec, SlotSpec, Tolerance, ValueSpec

DEFAULTS: dict[str, Any] = dict(file="t.yaml", name="t", line=1, B=6, H=2, HV=4, K=8, V=16, pool=10)
NESTED = {
    "slots": SlotSpec,
    "layout": LayoutSpec,
    "values": ValueSpec,
    "tol_out": Tolerance,
    "tol_state": Tolerance,
}


def spec(**fields: Any) -> CaseSpec:
    """A valid case with ``fields`` changed from the defaults."""
    merged = {**DEFAULTS, **fields}
    for key, cls in NESTED.items():
        if isinstance(merged.get(key), dict):
            merged[key] = cls(**merged[key])
    return CaseSpec(**merged)
