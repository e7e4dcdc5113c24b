"""Which library runs the learners' float32 matrix products on a CPU (a process-wide torch setting).

torch sends float32 CPU matmuls to MKL. On some CPUs MKL is far from the core's peak (AMD
EPYC, measured: about 100 GFLOP/s per core at 256×256×256, where oneDNN's float32 kernels reach
about 200), but torch routes float32 matmuls to oneDNN only when it may also lower their
precision to bfloat16 (``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``), and oneDNN
uses that licence only on CPUs with bfloat16 matrix units (AMX). :func:`set_fp32_matmul`
("onednn") therefore turns the routing on only after checking on test products against
float64 that results keep float32 accuracy, and leaves the default otherwise.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Literal

import torch

Fp32Matmul = Literal["default", "onednn"]
_PRECISION = {"default": "none", "onednn": "bf16"}  # torch.backends.mkldnn.matmul.fp32_precision
# float32 accumulation over k terms stays near sqrt(k)·2^-24 relative; bfloat16 inputs alone give ~2^-9
FP32_TOLERANCE = 1e-5


@lru_cache(maxsize=None)
def onednn_keeps_fp32() -> bool:
    """Whether matmuls routed to oneDNN keep float32 accuracy here (relative error of test
    products against float64 below :data:`FP32_TOLERANCE`)."""
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    shapes = [(1, 256, 256, 256), (2, 256, 256, 256), (1, 256, 31, 256), (1, 64, 4096, 64)]
    operands = [(torch.randn(e, m, k, generator=generator), torch.randn(e, k, n, generator=generator))
                for e, m, k, n in shapes]
    with fp32_matmul("onednn"):
        results = [(torch.bmm(a, b) if len(a) > 1 else a[0] @ b[0]).double() for a, b in operands]
    for (a, b), result in zip(operands, results):
        exact = torch.bmm(a.double(), b.double()) if len(a) > 1 else a[0].double() @ b[0].double()
        if ((result - exact).abs().max() / exact.abs().max()).item() > FP32_TOLERANCE:
            return False
    return True


@contextmanager
def fp32_matmul(kind: Fp32Matmul) -> Iterator[None]:
    """Run the block with CPU float32 matmuls on ``kind`` (unchecked), then restore the setting."""
    previous = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = _PRECISION[kind]
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = previous


def set_fp32_matmul(kind: Fp32Matmul) -> Fp32Matmul:
    """Send this process's CPU float32 matmuls to ``kind`` ("onednn" only where it keeps float32
    accuracy, see the module doc); returns the kind in effect."""
    if kind == "onednn" and not onednn_keeps_fp32():
        kind = "default"  # e.g. a CPU with AMX, where oneDNN would compute in bfloat16
    torch.backends.mkldnn.matmul.fp32_precision = _PRECISION[kind]
    return kind
