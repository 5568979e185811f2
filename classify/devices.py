"""The one place that chooses the torch device: CUDA when there is a GPU, else the CPU."""
from __future__ import annotations

import torch


def default_device(requested: str | torch.device | None = None) -> torch.device:
    """Return `requested` as a torch.device, or cuda when available, else cpu."""
    if requested is not None and str(requested) != "":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
