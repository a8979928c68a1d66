"""The one dtype table: every name a case file may use, and what it means.

Case files, inputs, tolerances, memory estimates and the bench all speak of
dtypes by these short names (``bf16``, ``fp32``, ...). The torch dtype is
named here as a string and resolved on first use, so that reading case files
and printing help never import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DType:
    """One storage type: its size and, for floats, the format's parameters.

    ``eps`` is the spacing just above 1.0, ``mant_bits`` the stored mantissa
    bits, ``min_exp`` the exponent of the smallest normal number and
    ``max_exp`` that of the largest finite one.
    """

    name: str
    torch_name: str
    bytes: int
    is_float: bool
    eps: float = 0.0
    mant_bits: int = 0
    min_exp: int = 0
    max_exp: int = 0

    @property
    def torch(self) -> Any:
        import torch

        return getattr(torch, self.torch_name)


def _float(name: str, torch_name: str, size: int, mant: int, min_exp: int, max_exp: int):
    return DType(name, torch_name, size, True, 2.0**-mant, mant, min_exp, max_exp)


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _float("fp32", "float32", 4, 23, -126, 127),
        _float("bf16", "bfloat16", 2, 7, -126, 127),
        _float("fp16", "float16", 2, 10, -14, 15),
        _float("fp64", "float64", 8, 52, -1022, 1023),
        DType("int32", "int32", 4, False),
        DType("int64", "int64", 8, False),
        DType("int16", "int16", 2, False),
        DType("int8", "int8", 1, False),
        DType("uint8", "uint8", 1, False),
    )
}

# What a valid case may use for each argument; the rest of the table is
# reachable only through the ``overrides`` of error cases.
ACT_DTYPES = ("bf16", "fp16", "fp32")
STATE_DTYPES = ("fp32", "bf16", "fp16")
PARAM_DTYPES = ("fp32", "act")  # A_log / dt_bias: fp32 or the activation dtype
INDEX_DTYPES = ("int32", "int64")
VALUE_DTYPES = ("fp32", "bf16", "fp16")  # the dtypes an output or a state is checked in


def dtype(name: str) -> DType:
    """The table's row for ``name``, with an error that lists the known names."""
    try:
        return DTYPES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dtype {name!r}; known: {sorted(DTYPES)}") from None


def torch_dtype(name: str) -> Any:
    """The torch dtype for a table name (imports torch)."""
    return dtype(name).torch


def nbytes(name: str) -> int:
    return dtype(name).bytes
