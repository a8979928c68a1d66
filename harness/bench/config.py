"""What a bench run is asked to do: shapes, batches, layouts and the run's other options.

Plain Python without torch, so that ``gdn-harness --help`` can list the
bench's options without loading it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from harness.core.layouts import LAYOUTS

DEFAULT_SHAPES = "16/32,4/8"  # H/HV of Qwen3-Next at TP1 and TP4 (K = V = 128)
DEFAULT_BATCHES = "1,2,4,8,16,32,64,128,256,512,1024"
DEFAULT_LAYOUTS = "vk,kv"
DRY_SHAPES = "1/2/16/16"
DRY_BATCHES = "1,3"
DEFAULT_REPLAYS = 100
DEFAULT_CHECK_ROWS = 16
SLOT_ORDERS = {
    "permuted": "slots a seeded permutation of each set's region",
    "identity": "row n of set i in slot i*B + n (a diagnostic: serving's slots are scattered)",
}


@dataclass(frozen=True)
class Shape:
    """Head counts and head dims of one benchmarked model configuration."""

    H: int
    HV: int
    K: int = 128
    V: int = 128

    @property
    def label(self) -> str:
        dims = "" if (self.K, self.V) == (128, 128) else f"/{self.K}/{self.V}"
        return f"{self.H}/{self.HV}{dims}"


def parse_shapes(text: str) -> list[Shape]:
    """``"16/32,4/8"`` -> shapes; an item is ``H/HV`` or ``H/HV/K/V`` (K = V = 128 default)."""
    shapes = []
    for item in text.split(","):
        parts = [p for p in item.strip().split("/") if p]
        if len(parts) not in (2, 4) or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"shape {item!r}: expected H/HV or H/HV/K/V")
        dims = [int(p) for p in parts]
        if min(dims) < 1 or dims[1] % dims[0]:
            raise argparse.ArgumentTypeError(f"shape {item!r}: HV must be a multiple of H")
        shapes.append(Shape(*dims))
    return shapes


def parse_ints(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive integers)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def parse_layouts(text: str) -> list[str]:
    """``"vk,kv"`` -> ``["vk", "kv"]`` (state layouts)."""
    layouts = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad or not layouts:
        raise argparse.ArgumentTypeError(f"layouts must be vk and/or kv, got {text!r}")
    return layouts


@dataclass
class BenchConfig:
    """Everything a bench run was asked to do (recorded in the JSON)."""

    impls: list[str]
    shapes: list[Shape]
    batches: list[int]
    layouts: list[str]
    act_dtype: str
    state_dtype: str
    replays: int
    input_sets: int | None
    check: bool
    check_rows: int
    dry: bool
    device: str
    recurrent: bool
    main: bool
    harness_cost: bool
    oracle_rows: int | None
    seed: int = 0
    slot_order: str = "permuted"
