"""Triton kernels for the GDN packed single-token decode step.

Importing this package sets ``TRITON_INTERPRET=1`` when no CUDA device is
present and the variable is unset, so the kernels run under the Triton
interpreter on CPU-only machines without any setup by the caller. The
variable must be set before the ``@triton.jit`` decorators run, which is why
it happens here, before the kernel modules are imported.
"""

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from kernels.baseline import baseline_decode
from kernels.packed_decode import packed_decode

__all__ = ["baseline_decode", "packed_decode"]
