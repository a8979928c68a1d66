"""Tiling variants of the packed kernel, for sweeps through ``gdn-harness bench --impl``.

Each is the packed kernel with one (BV, num_warps) choice, e.g.
``gdn-harness bench --impl benchmarks.packed_variants:bv16_w2``.
"""

from functools import partial

from kernels import packed_decode

bv4_w1 = partial(packed_decode, BV=4, num_warps=1)
bv8_w2 = partial(packed_decode, BV=8, num_warps=2)
bv16_w1 = partial(packed_decode, BV=16, num_warps=1)
bv16_w2 = partial(packed_decode, BV=16, num_warps=2)
bv32_w2 = partial(packed_decode, BV=32, num_warps=2)
bv32_w8 = partial(packed_decode, BV=32, num_warps=8)
bv64_w4 = partial(packed_decode, BV=64, num_warps=4)
