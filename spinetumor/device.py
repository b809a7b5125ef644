"""Which torch device inference and training use: CUDA, then Apple MPS, then CPU.

Overridden by an explicit choice (the ``--device`` option) or by the environment
variable ``SPINETUMOR_DEVICE``; every torch code path asks :func:`select_device`.
"""

from __future__ import annotations

import contextlib
import os
import sys

ENV_VAR = "SPINETUMOR_DEVICE"
CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def select_device(requested: str | None = None):
    """Return a ``torch.device``: ``requested``, else $SPINETUMOR_DEVICE, else the best available.

    ``auto`` (the default) picks CUDA, then MPS, then CPU. Asking for a device that is
    not available raises :class:`DeviceError` instead of silently falling back.
    """
    import torch

    choice = (requested or os.environ.get(ENV_VAR) or "auto").strip().lower()
    base = choice.split(":")[0]
    if base not in CHOICES:
        raise DeviceError(f"unknown device {choice!r}; choose one of {', '.join(CHOICES)}")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was requested but no CUDA GPU is available (use --device cpu or auto)")
    if base == "mps" and not _mps_available(torch):
        raise DeviceError("device 'mps' was requested but Apple MPS is not available (use --device cpu or auto)")
    return torch.device(choice)


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


@contextlib.contextmanager
def exact_inference():
    """Network inference: no autograd, and full float32 matrix products and convolutions.

    On recent NVIDIA GPUs cuDNN computes convolutions in TF32 (a 10-bit mantissa) unless
    told not to, so a GPU run would drift from the CPU's results by more than rounding;
    for a measurement tool the same scan should give the same masks on either device.
    The flags are set back afterwards (they are process-wide: Slicer's other modules keep theirs).
    """
    import torch

    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def cpu_threads() -> int:
    """CPU threads for the engine's own parallel steps (FFTs, distance transforms, filters, forest).

    The same count as torch's (``torch.set_num_threads``, ``spinetumor run --threads`` and the
    training commands' ``--threads``; by default one per core), so one setting limits the whole
    engine; every core when torch is not loaded. The results never depend on it.
    """
    torch = sys.modules.get("torch")
    return max(1, torch.get_num_threads() if torch is not None else (os.cpu_count() or 1))


def thread_map(function, items) -> list:
    """``[function(item) for item in items]``, computed side by side in up to :func:`cpu_threads`
    threads. For functions whose C code releases the GIL (FFTs, scipy filters and distance
    transforms, tree prediction); the results and their order are those of the plain loop."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    threads = min(len(items), cpu_threads())
    if threads <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))
