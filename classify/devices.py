"""The one place that chooses the torch device: CUDA when there is a GPU, else the CPU."""
from __future__ import annotations

import torch


def default_device(requested: str | torch.device | None = None) -> torch.device:
    """Return `requested` as a torch.device, or cuda when available, else cpu."""
    if requested is not None and str(requested) != "":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
