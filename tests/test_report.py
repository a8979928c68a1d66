"""The largest-errors table: the worst step per pair, and no bound for a pair
that is only reported."""

from harness.report import errors_markdown


def stat(pair, quantity, step, max_abs, ratio, checked=True):
    return {
        "pair": pair,
        "quantity": quantity,
        "step": step,
        "max_abs": max_abs,
        "worst_ratio": ratio,
        "checked": checked,
    }


def test_errors_table_takes_the_worst_step_and_shows_no_bound_for_reported_pairs():
    stats = [
        stat("packed vs oracle", "out", 0, 1e-3, 0.2),
        stat("packed vs oracle", "out", 1, 5e-4, 0.7),  # smaller error, closer to its bound
        stat("packed vs oracle", "state", 0, 2e-7, 0.01),
        stat("packed vs baseline", "out", 0, 3e-5, 0.0, checked=False),
        stat("packed vs baseline", "out", 1, 8e-5, 0.0, checked=False),
        stat("packed vs baseline", "state", 0, 1e-7, 0.0, checked=False),
    ]
    row = {"id": "cases/f.yaml::c", "name": "c", "status": "failed", "stats": stats}
    lines = errors_markdown([row]).splitlines()
    assert "| `cases/f.yaml::c` | packed vs oracle | 0.0005 | 0.7 | 2e-07 | 0.01 |" in lines
    assert "| `cases/f.yaml::c` | packed vs baseline | 8e-05 | - | 1e-07 | - |" in lines


def test_summary_shows_a_drift_that_is_not_finite():
    from harness.report import summarize, summary_markdown

    drift = [
        {"who": "packed", "step": 0, "state_max_abs": 1e-7, "out_max_abs": 2e-3},
        {"who": "packed", "step": 1, "state_max_abs": "nan", "out_max_abs": "inf"},
    ]
    row = {"id": "f.yaml::c", "status": "passed", "duration_s": 0.1, "drift": drift}
    text = summary_markdown([row], summarize([row]))
    assert "| `f.yaml::c` | packed | 2 | nan | inf |" in text.splitlines()
