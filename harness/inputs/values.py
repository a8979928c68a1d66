"""The values of a case's inputs, drawn per ``ValueSpec`` from seeded CPU streams.

Each tensor and each decode step has a ``torch.Generator`` of its own,
derived from the case seed: equal specs give bit-identical values on any
machine, and adding a step never changes the earlier ones. Values are drawn
in fp32 on the CPU, rounded to their dtype there, then copied into the
(strided, device) views. Nothing depends on the device RNG.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from harness.core.host import cpu_count
from harness.core.spec import CaseSpec
from harness.inputs.buffers import GuardedBuffer

# Pools with more elements than this get random values only in the slots that
# live rows name; the others get a cheap deterministic pattern on the device.
RANDOM_STATE_LIMIT = 1 << 24
CHUNK_ELEMS = 1 << 24  # elements per chunk when filling big pools

# drawn in fp32 whatever torch's default dtype is
_F32 = torch.float32
_TAGS = {"qkv": 1, "a": 2, "b": 3, "A_log": 4, "dt_bias": 5, "state": 6, "state_chunk": 7}


def generator(spec: CaseSpec, tensor: str, step: int = 0) -> torch.Generator:
    """An independent CPU stream per (seed, tensor, step)."""
    seq = np.random.SeedSequence([spec.seed % 2**64, _TAGS[tensor], step])
    word = int(seq.generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator().manual_seed(word)


def _tiny(x: torch.Tensor, norm: float, gen: torch.Generator) -> torch.Tensor:
    """Rescale each head vector (last dim) to ``norm`` times 2**U(-1, 1)."""
    factor = torch.exp2(torch.rand(x.shape[:-1], generator=gen, dtype=_F32) * 2 - 1) * norm
    length = x.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return x / length * factor.unsqueeze(-1)


def qkv_values(spec: CaseSpec, step: int) -> torch.Tensor:
    """``[B, 2*H*K + HV*V]`` fp32 on CPU: q, k, v of one step."""
    gen, vals, B = generator(spec, "qkv", step), spec.values, spec.B
    q = torch.randn(B, spec.H, spec.K, generator=gen, dtype=_F32) * vals.qkv_std
    k = torch.randn(B, spec.H, spec.K, generator=gen, dtype=_F32) * vals.qkv_std
    v = torch.randn(B, spec.HV, spec.V, generator=gen, dtype=_F32) * vals.qkv_std
    if vals.tiny_qk:
        q = _tiny(q, vals.tiny_qk_norm, gen)
        k = _tiny(k, vals.tiny_qk_norm, gen)
    return torch.cat([x.flatten(1) for x in (q, k, v)], dim=1)  # an empty batch too


def gate_values(spec: CaseSpec, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` of one step, ``[B, HV]`` fp32 on CPU."""
    vals, shape = spec.values, (spec.B, spec.HV)
    a = (
        torch.randn(shape, generator=generator(spec, "a", step), dtype=_F32) * vals.gate_std
        + vals.gate_mean
    )
    b = torch.randn(shape, generator=generator(spec, "b", step), dtype=_F32) * vals.beta_std
    return a, b


def param_values(spec: CaseSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_log`` and ``dt_bias``, ``[HV]`` fp32 on CPU."""
    vals = spec.values
    u = torch.rand(spec.HV, generator=generator(spec, "A_log"), dtype=torch.float64)
    A_log = (u * (vals.a_log_hi - vals.a_log_lo) + vals.a_log_lo).float()
    dt_bias = (
        torch.randn(spec.HV, generator=generator(spec, "dt_bias"), dtype=_F32) * vals.dt_bias_std
    )
    return A_log, dt_bias


def store(view: torch.Tensor, values: torch.Tensor) -> None:
    """Round on the CPU, then copy into the (strided, device) view."""
    view.copy_(values.to(view.dtype))


def _fill_pattern(slots: torch.Tensor, std: float) -> None:
    """Cheap deterministic values for every slot, computed on the device.

    Element ``i`` (slot-major, pads skipped) gets ``((i * 40503) mod 65521)``
    mapped to ``[-1, 1]`` times ``std * sqrt(3)``: integer arithmetic plus
    two correctly rounded fp32 ops, so it is the same on every device.
    """
    N, E = slots.shape
    rows = max(1, CHUNK_ELEMS // max(E, 1))
    amp = std * math.sqrt(3.0)
    for s0 in range(0, N, rows):
        s1 = min(N, s0 + rows)
        idx = torch.arange(s0 * E, s1 * E, dtype=torch.int64, device=slots.device)
        unit = ((idx * 40503) % 65521).to(torch.float32) * (2.0 / 65520) - 1.0
        slots[s0:s1].copy_((unit * amp).view(s1 - s0, E))


def fill_state(buf: GuardedBuffer, spec: CaseSpec, indices: list[int]) -> None:
    """Random slots (all, or those live rows name on big pools); pattern elsewhere."""
    N, E = spec.pool, spec.HV * spec.V * spec.K
    slots = buf.data2d()[:, :E]
    std = spec.values.state_std
    if N * E <= RANDOM_STATE_LIMIT:
        store(slots, torch.randn(N, E, generator=generator(spec, "state"), dtype=_F32) * std)
        return
    _fill_pattern(slots, std)
    live = sorted({s for s in indices if 0 <= s < N})
    rows = max(1, CHUNK_ELEMS // max(E, 1))
    chunks = [live[i : i + rows] for i in range(0, len(live), rows)]

    def values(i: int) -> torch.Tensor:  # a stream per chunk: chunks are drawn in parallel
        gen = generator(spec, "state_chunk", i)
        return (torch.randn(len(chunks[i]), E, generator=gen, dtype=_F32) * std).to(slots.dtype)

    with ThreadPoolExecutor(max_workers=draw_threads(len(chunks))) as pool:
        for chunk, vals in zip(chunks, pool.map(values, range(len(chunks))), strict=True):
            slots[torch.tensor(chunk, device=slots.device)] = vals.to(slots.device)


def draw_threads(chunks: int) -> int:
    """Threads drawing the live slots of a big pool (torch releases the GIL)."""
    return max(1, min(chunks, cpu_count(), 16))
