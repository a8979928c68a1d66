"""The vocabulary every stage shares: a case's spec, dtypes, layouts, tiers, exit codes.

Imports nothing else from the harness and never imports torch, so that
reading case files and printing help stay fast.
"""

from harness.core.dtypes import DTYPES, DType, dtype, nbytes, torch_dtype
from harness.core.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from harness.core.layouts import KV, LAYOUTS, PAD_SLOT_ID, VK, slot_shape
from harness.core.spec import CaseSpec, ExpectError, LayoutSpec, SlotSpec, Tolerance, ValueSpec
from harness.core.tiers import TIERS, runnable_tiers, tier_unrunnable

__all__ = [
    "DTYPES",
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_USAGE",
    "KV",
    "LAYOUTS",
    "PAD_SLOT_ID",
    "TIERS",
    "VK",
    "CaseSpec",
    "DType",
    "ExpectError",
    "LayoutSpec",
    "SlotSpec",
    "Tolerance",
    "ValueSpec",
    "dtype",
    "nbytes",
    "runnable_tiers",
    "slot_shape",
    "tier_unrunnable",
    "torch_dtype",
]
