"""Planted-bug fixtures and the bug-class tags the case library is checked against.

``tests/planted/bugs.py`` holds a pure-torch implementation of the contract
with switchable bugs. This module holds what the planted bugs and the case
library share: the vocabulary of bug classes (docs/design.md, "Bug classes the
case library must catch") and the parser of the ``# catches:`` comment that
sits above every case in ``cases/``::

    # catches: padding-unwritten, padding-writes-slot -- every other row is padding
    - name: padding_alternate
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.cases import iter_case_files, load_file
from harness.core.spec import CaseSpec

# docs/design.md's bug classes that the cpu tier must catch (the Triton
# interpreter shows them), plus the side-effect checks every case runs.
CPU_CLASSES = frozenset(
    {
        "qkv-row-stride",
        "ab-row-stride",
        "slot-from-row",
        "padding-unwritten",
        "padding-writes-slot",
        "slot0-as-padding",
        "gqa-mapping",
        "scale-before-norm",
        "eps-placement",
        "dt-bias-precision",
        "a-log-precision",
        "softplus-threshold",
        "beta-bf16",
        "decay-after-update",
        "output-old-state",
        "transposed-layout",
        "head-dim-tail",
        "batch-tail",
        "state-bf16-rounding",
        "output-bf16-rounding",
        "guard-writes",
        "input-modified",
        "nondeterminism",
    }
)
# Bug classes that need sizes only a GPU tier can afford.
GPU_CLASSES = frozenset({"offset-overflow", "grid-overflow"})
# Tags for what a case exercises beyond a bug class.
OTHER_TAGS = frozenset(
    {
        "validation",  # the wrappers' argument checks (expect: error)
        "slot-stride",  # page-padded pools: stride(0) larger than a slot
        "dtype-coverage",  # every dtype combination
        "drift",  # multi-step: the carried state against the exact trajectory
        "real-shape",  # a real model's H/HV/K/V
        "null-slot",  # slot 0 as the null block (pad: nonpositive), pinned by the case
    }
)
ALL_TAGS = CPU_CLASSES | GPU_CLASSES | OTHER_TAGS

CATCHES_RE = re.compile(
    r"^\s*#\s*catches:\s*(?P<tags>[a-z0-9][a-z0-9, -]*?)\s+--\s+(?P<what>\S.*)$"
)


def comment_tags(lines: list[str], case_line: int) -> set[str] | None:
    """Tags of the ``# catches:`` line in the comment block right above 1-based
    ``case_line``; None when there is none."""
    found = None
    i = case_line - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        m = CATCHES_RE.match(lines[i])
        if m:
            found = (found or set()) | {t.strip() for t in m["tags"].split(",") if t.strip()}
        i -= 1
    return found


def tagged_cases(root: str | Path) -> list[tuple[CaseSpec, set[str] | None]]:
    """Every case under ``root`` with the tags of its ``# catches:`` comment."""
    out = []
    for path in iter_case_files([root]):
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for spec in load_file(path):
            out.append((spec, comment_tags(lines, spec.line)))
    return out
