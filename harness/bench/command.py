"""``gdn-harness bench``: how fast the packed decode step is, measured honestly.

Why each part of the method is the way it is, module by module:

* **Correctness first** (``verify.py``): every implementation is checked by
  the harness's own per-element check on the very buffers that are then
  timed; a case that fails is reported as FAIL and never timed.
* **CUDA-graph replay from a scrubbed L2** (``timing.py``, ``l2scrub.py``):
  as serving replays graphs, and with no lines left in L2 by an earlier
  implementation.
* **Rotating input sets** (``inputsets.py``, built by ``harness.inputs``):
  each call of a timing on its own activations, output and state region,
  several times the L2 size in all.
* **The floor** (``floor.py``, ``bandwidth.py``): the bytes a step must move
  over this card's copy bandwidth in this run, and a copy of the step's own
  size beside it.
* **The main table** (``table.py``) and its targets (``targets.py``).
* **Baseline honesty** (``recurrent.py``): the baseline's recurrent kernel
  alone against FLA's, through the harness's FLA adapter.
* **Peers** (``table.py``, ``targets.py``): outside kernels (``--impl vllm
  --impl flashinfer``) in the same table, each checked under its own padding
  conventions, skipped with the reason where it cannot express a case, and
  packed held to be at least as fast as vLLM on the default grid.
* **The harness's own cost** (``cost.py``): the check of the largest nightly
  step on each check device (CPU, and GPU where CuPy is), and the runner's
  overhead per case.

``run.py`` runs the sections and writes bench.json (``rows.py``), bench.md
(``output.py``) and bench.svg (``plot.py``). ``--dry`` runs everything on
tiny shapes without graphs (CPU: the Triton interpreter), which exercises
the code, not the hardware.

This module only parses the command line: it imports neither torch nor the
kernels, so ``gdn-harness --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.bench.config import (
    DEFAULT_BATCHES,
    DEFAULT_CHECK_ROWS,
    DEFAULT_LAYOUTS,
    DEFAULT_REPLAYS,
    DEFAULT_SHAPES,
    DRY_BATCHES,
    DRY_SHAPES,
    SLOT_ORDERS,
    BenchConfig,
    parse_ints,
    parse_layouts,
    parse_shapes,
)
from harness.bench.floor import L2_FACTOR
from harness.bench.output import console_report
from harness.core.dtypes import ACT_DTYPES, STATE_DTYPES
from harness.core.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from harness.impls.registry import ImplError


def _config(args: argparse.Namespace, device: str) -> BenchConfig:
    """The run the options ask for, with ``--dry``'s smaller defaults."""
    dry = args.dry

    def given(value: Any, dry_default: Any, default: Any) -> Any:
        return value if value is not None else (dry_default if dry else default)

    return BenchConfig(
        impls=args.impl or [],
        shapes=args.shapes or parse_shapes(DRY_SHAPES if dry else DEFAULT_SHAPES),
        batches=args.batches or parse_ints(DRY_BATCHES if dry else DEFAULT_BATCHES),
        layouts=args.layouts,
        act_dtype=args.act_dtype,
        state_dtype=args.state_dtype,
        replays=given(args.replays, 1, DEFAULT_REPLAYS),
        input_sets=given(args.input_sets, 2, None),
        check=not args.no_check,
        check_rows=given(args.check_rows, 4, DEFAULT_CHECK_ROWS),
        dry=dry,
        device=device,
        recurrent=not args.no_recurrent,
        main=not args.recurrent_only,
        harness_cost=not (args.no_harness_cost or args.recurrent_only),
        oracle_rows=args.oracle_rows,
        slot_order=args.slot_order,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Entry point of ``gdn-harness bench``; exit 1 when a correctness check failed."""
    # torch and the bench's sections are imported only when the command runs,
    # so that `gdn-harness --help` (which registers this command) does not load them.
    import torch

    from harness.bench.run import run_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not device.startswith("cuda") and not args.dry:
        print(
            "error: bench times CUDA graphs and needs a CUDA device; --dry runs a CPU smoke test",
            file=sys.stderr,
        )
        return EXIT_USAGE
    out_dir = Path(args.out) if args.out else Path("reports") / time.strftime("bench-%Y%m%d-%H%M%S")
    report = run_bench(_config(args, device), out_dir)
    print(console_report(report, out_dir), flush=True)
    if report.failed_checks:
        return EXIT_FAIL
    if args.fail_on_miss and report.targets and report.targets.missed:
        return EXIT_FAIL
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``bench`` to the ``gdn-harness`` command (called by harness.cli)."""
    p = subparsers.add_parser(
        "bench",
        help="time packed vs baseline (and --impl) under CUDA-graph replay; table, JSON, plot",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    count = functools.partial(p.add_argument, type=int, metavar="N")
    switch = functools.partial(p.add_argument, action="store_true")
    p.add_argument(
        "--impl",
        action="append",
        metavar="IMPL",
        help="impl name of an extra implementation beside packed and baseline (repeatable)",
    )
    p.add_argument(
        "--shapes",
        type=parse_shapes,
        metavar="H/HV[,...]",
        help=f"H/HV or H/HV/K/V items (default {DEFAULT_SHAPES}, K = V = 128)",
    )
    p.add_argument(
        "--batches",
        type=parse_ints,
        metavar="B[,...]",
        help=f"batch sizes (default {DEFAULT_BATCHES})",
    )
    p.add_argument(
        "--layouts",
        type=parse_layouts,
        default=parse_layouts(DEFAULT_LAYOUTS),
        help="state layouts (default vk,kv)",
    )
    for flag, dtypes, default in (("--state", STATE_DTYPES, "fp32"), ("--act", ACT_DTYPES, "bf16")):
        what = f"{flag[2:]} dtype of the timed steps (default {default})"
        p.add_argument(f"{flag}-dtype", choices=list(dtypes), default=default, help=what)
    count(
        "--replays",
        help=f"timed graph replays per implementation and case (default {DEFAULT_REPLAYS})",
    )
    count(
        "--input-sets",
        help=f"input sets rotated in one graph (default: auto, >= {L2_FACTOR:g}x L2)",
    )
    count(
        "--check-rows",
        help=f"rows checked against the oracle before timing (default {DEFAULT_CHECK_ROWS})",
    )
    switch("--no-check", help="time without the correctness check")
    switch("--recurrent-only", help="only baseline_recurrent vs FLA's recurrent kernel")
    switch("--no-recurrent", help="skip the recurrent section")
    switch("--no-harness-cost", help="skip timing the oracle and the runner")
    count(
        "--oracle-rows",
        help="rows of the B=1024 check timed on the CPU (default all; fewer are scaled)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="report folder (default reports/bench-<timestamp>/)"
    )
    p.add_argument("--device", help="cuda (default when present) or cpu (with --dry)")
    switch("--dry", help="smoke run: tiny shapes, 1 replay, no CUDA graphs (CPU: interpreter)")
    p.add_argument(
        "--slot-order",
        choices=list(SLOT_ORDERS),
        default="permuted",
        help="state slots of each input set: permuted (default, as in serving) or identity",
    )
    switch("--fail-on-miss", help="exit 1 when a target is missed")
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.bench.command [options]``: the same command without harness.cli.

    Useful on a GPU box that has torch, triton and numpy but not the CLI's other
    dependencies (pyyaml, jsonschema, hypothesis), which the bench does not need.
    """
    parser = argparse.ArgumentParser(prog="python -m harness.bench.command")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ImplError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
