"""Finding the project's case folder from wherever a command runs."""

from __future__ import annotations

from pathlib import Path

from harness.cases import project_root, regressions_dir

ROOT = Path(__file__).resolve().parents[1]


def test_this_checkout_is_found_from_inside_it():
    assert project_root(ROOT / "harness" / "cases") == ROOT
    assert regressions_dir(ROOT / "tests") == ROOT / "cases" / "regressions"


def test_the_harness_pyproject_or_a_git_folder_marks_the_root(tmp_path):
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    (inner / "a" / "b").mkdir(parents=True)
    (outer / ".git").mkdir()
    assert project_root(inner / "a" / "b") == outer
    (inner / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert project_root(inner / "a") == outer  # another project's pyproject is not ours
    (inner / "pyproject.toml").write_text('[tool.x]\nname = "gdn-harness"\n[project]\nname = "x"\n')
    assert project_root(inner / "a") == outer
    (inner / "pyproject.toml").write_text("[project]\nversion = '1'\nname = 'gdn-harness'\n")
    assert project_root(inner / "a" / "b") == inner
    assert regressions_dir(inner / "a") == inner / "cases" / "regressions"


def test_without_a_project_the_current_directory_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if project_root(tmp_path) is None:  # a temporary folder inside a git checkout has one
        assert regressions_dir() == tmp_path.resolve() / "cases" / "regressions"
