"""Does a timing depend on when, within a bench case, it is taken?

``gdn-harness bench`` checks and then times each implementation of a case one
after another, always in the same order. This probe times the same
implementations round after round on one case, exactly as the bench does
(same buffers, same check before each timing unless ``--no-check``), and
prints every timing with its position and the card's clocks right after it.
If one implementation's time moves with its position, or with the clocks, a
comparison between implementations of one case carries that drift.

Usage (on a GPU):
``python benchmarks/order_probe.py --shape 16/32 --layout kv --batch 32 \\
    --impls packed,benchmarks.packed_variants:plain --rounds 6``
"""

from __future__ import annotations

import argparse
import subprocess

import torch

from harness.bench.config import parse_shapes
from harness.bench.inputsets import probe_case
from harness.bench.table import time_sets
from harness.bench.verify import prepare_check, run_check
from harness.impls.registry import load_implementation

CLOCK_QUERY = "clocks.sm,clocks.mem,temperature.gpu,power.draw"


def card_state() -> str:
    """SM and memory clocks (MHz), temperature (C) and power (W), from nvidia-smi."""
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={CLOCK_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(nvidia-smi: {exc})"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "(no output)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="16/32")
    p.add_argument("--layout", default="kv")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--impls", default="packed,benchmarks.packed_variants:plain")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--replays", type=int, default=100)
    p.add_argument("--no-check", action="store_true")
    args = p.parse_args()
    device = torch.device("cuda")
    (shape,) = parse_shapes(args.shape)
    sets = probe_case(shape, args.batch, args.layout, device)
    chk = None if args.no_check else prepare_check(sets, 16)
    impls = [load_implementation(s) for s in args.impls.split(",")]
    print(f"card: {torch.cuda.get_device_name(device)} | sets {sets.count} | {CLOCK_QUERY}")
    for r in range(args.rounds):
        for pos, impl in enumerate(impls):
            if chk is not None:
                ok, detail = run_check(impl.fn, sets, chk)
                assert ok, detail
            t = time_sets(impl.fn, sets, device, args.replays)
            print(
                f"round {r} pos {pos} {impl.spec:>40} median {t.median_us:8.2f} us"
                f" min {t.min_us:8.2f} | {card_state()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
