"""The layout of docs/design.md section 6, enforced.

Stages in flow order; an earlier stage never imports a later one (at module
level or inside a function), the stage packages have no import cycles, no
module grows past the size where it has more than one job, ``kernels/``
never imports the harness and ``reference/`` imports NumPy and the standard
library only.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["core", "cases", "inputs", "impls", "check", "run", "report", "fuzz", "bench"]
FACES = {"cli", "plugin", "options", "__main__", "__init__"}
MAX_LINES = 600


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file (or
    only at module level: what importing the module costs)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _stage(path_or_module: str) -> str | None:
    parts = path_or_module.replace("/", ".").removesuffix(".py").split(".")
    if parts[0] != "harness" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in STAGES else "faces"


def _rank(stage: str) -> int:
    return len(STAGES) if stage == "faces" else STAGES.index(stage)


def _harness_modules() -> list[tuple[Path, str]]:
    return [(p, _stage(str(p.relative_to(ROOT))) or "faces") for p in _modules("harness")]


def test_no_stage_imports_a_later_stage():
    upward = []
    for path, stage in _harness_modules():
        for name in _imports(path):
            target = _stage(name)
            if target and _rank(target) > _rank(stage):
                upward.append(f"{path.relative_to(ROOT)} ({stage}) imports {name} ({target})")
    assert not upward, "\n".join(sorted(upward))


def test_stage_packages_have_no_cycles():
    edges: dict[str, set[str]] = {s: set() for s in [*STAGES, "faces"]}
    for path, stage in _harness_modules():
        for name in _imports(path):
            target = _stage(name)
            if target and target != stage:
                edges[stage].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in edges[start] - seen)

    cyclic = [s for s in edges if reaches(s, s, set())]
    assert not cyclic, f"packages on an import cycle: {cyclic}"


def test_core_imports_no_other_stage_and_not_torch_at_import_time():
    for path in _modules("harness/core"):
        for name in _imports(path):
            assert _stage(name) in (None, "core"), f"{path.name} imports {name}"
        for name in _imports(path, top_level_only=True):
            assert not name.startswith(("torch", "triton")), f"{path.name} imports {name}"


@pytest.mark.parametrize("folder", ["harness", "kernels", "reference"])
def test_no_module_has_more_than_one_job(folder):
    big = {
        str(p.relative_to(ROOT)): n
        for p in _modules(folder)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_kernels_never_import_the_harness():
    for path in _modules("kernels"):
        bad = [n for n in _imports(path) if n.split(".")[0] in ("harness", "reference")]
        assert not bad, f"{path.name} imports {bad}"


def test_reference_imports_numpy_and_the_standard_library_only():
    allowed = {"numpy", "reference", "__future__", *sys.stdlib_module_names}
    for path in _modules("reference"):
        bad = [n for n in _imports(path) if n.split(".")[0] not in allowed]
        assert not bad, f"{path.name} imports {bad}"
