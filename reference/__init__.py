"""The float64 oracle, in NumPy's API: it runs on NumPy arrays, or on the
arrays of a module with the same API (CuPy) on their device. Imports neither
torch nor kernels/."""

from reference.namespace import array_namespace, to_numpy
from reference.oracle import RowsResult, decode_rows, decode_step

__all__ = ["RowsResult", "array_namespace", "decode_rows", "decode_step", "to_numpy"]
