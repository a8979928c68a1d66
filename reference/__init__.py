"""The float64 NumPy oracle. Imports neither torch nor kernels/."""

from reference.oracle import RowsResult, decode_rows, decode_step

__all__ = ["RowsResult", "decode_rows", "decode_step"]
