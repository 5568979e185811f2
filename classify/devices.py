"""The one device choice and the one numeric-precision choice, for training, evaluation and prediction.

- `default_device(requested)`: the torch.device to run on; a bare "cuda" becomes the current GPU's
  index ("cuda:0" unless torch.cuda.set_device chose another), so that every placement decision
  (free memory, where the images live, where batches go) speaks of the same GPU.
- `autocast_dtype(device, precision)`: bfloat16 or float16 autocast, or None (float32). "auto" is
  bf16 on GPUs that compute it natively (compute capability 8.0 and up: A100, H100/H200, RTX 30xx
  on), fp16 with a GradScaler on older GPUs (V100, T4), float32 on the CPU. `torch.cuda.
  is_bf16_supported()` alone also counts emulated bf16, which is slow or fails on those older GPUs.
- `float32_final_layer(model)`: while mixed precision runs the body, the final Linear runs in
  float32, so that scores (and the EER, thresholds and score files made from them) are not rounded
  to bf16's 8 significant bits: 512 images gave 40 distinct scores with a bf16 final layer.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # the values of --precision
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device(requested=None) -> torch.device:
    """Return `requested` as a torch.device (default: cuda when available, else cpu), a bare "cuda"
    with the current GPU's index."""
    if requested is None or requested == "":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def native_bf16(device: torch.device) -> bool:
    """Return True when the CUDA `device` computes bfloat16 in hardware (compute capability >= 8.0)."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(device, precision: str = "auto") -> str:
    """Return "fp32", "bf16" or "fp16": `precision`, or for "auto" the fastest exact-enough one for `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type != "cuda":
        return "fp32"  # CPU autocast is slower than float32 on most CPUs (no AMX / AVX512-BF16)
    return "bf16" if native_bf16(device) else "fp16"


def autocast_dtype(device, precision: str = "auto") -> torch.dtype | None:
    """Return the autocast dtype for `device` and `precision`, or None for float32 (no autocast)."""
    return DTYPES[resolve_precision(device, precision)]


def final_linear(model: nn.Module) -> nn.Linear | None:
    """Return the model's last nn.Linear in registration order: the classifier of every classify.archs model."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    return last


@contextlib.contextmanager
def float32_final_layer(model: nn.Module):
    """Within the block, the final Linear of `model` runs in float32 with autocast off (hooks, removed after)."""
    layer = final_linear(model)
    if layer is None:
        yield
        return
    entered = []  # the autocast-off contexts of calls in progress

    def before(_module, args):
        off = torch.autocast(args[0].device.type, enabled=False)
        off.__enter__()
        entered.append(off)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def after(_module, _args, _output):
        if entered:
            entered.pop().__exit__(None, None, None)

    handles = [layer.register_forward_pre_hook(before), layer.register_forward_hook(after, always_call=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def autocast(device, dtype: torch.dtype | None):
    """Return the autocast context for `device` (its type) and `dtype`; a disabled one for None (float32)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


# errors that mean the GPU ran out of memory: the caching allocator's, and cuDNN's / cuBLAS's own
# allocations (a plain RuntimeError, e.g. "CUDNN_STATUS_ALLOC_FAILED" or "CUDA error: out of memory")
OUT_OF_MEMORY_MARKERS = ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED",
                         "CUDNN_STATUS_NOT_INITIALIZED", "CUBLAS_STATUS_NOT_INITIALIZED")


def is_out_of_memory(error: BaseException) -> bool:
    """Return True when `error` (or an error it was raised from) is a GPU out-of-memory failure."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, torch.OutOfMemoryError):
            return True
        if isinstance(error, RuntimeError) and any(m in str(error) for m in OUT_OF_MEMORY_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


def out_of_memory_line(error: BaseException) -> str:
    """Return the line of `error`'s message that tells what ran out (fastai prefixes its own line)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    hits = [line for line in lines if any(m.lower() in line.lower() for m in OUT_OF_MEMORY_MARKERS)]
    return (hits or lines or [type(error).__name__])[0]


def check_device_name(name: str | None) -> None:
    """Raise ValueError saying what is accepted when `name` (a --device value; None or "" = automatic) is not
    a torch device string such as cpu, cuda, cuda:1 or mps. Whether that device exists is checked on use."""
    if name is None or str(name) == "":
        return
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device: use cpu, cuda, cuda:N or mps "
                         f"(or leave it out: cuda when available, else cpu)") from None
