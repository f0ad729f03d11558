"""Choosing the device, in one place for every command."""

import torch

from .errors import VaeError


def choose(name: str, local_rank: int | None = None) -> torch.device:
    """The device that config value `name` asks for (auto: cuda, then mps, then cpu); under
    torchrun, `local_rank` picks this process's GPU."""
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
    else:
        device = torch.device(name)
        available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not available[device.type]:
            raise VaeError(f"device {name} is not available on this machine: use auto or cpu")
    if device.type == "cuda" and local_rank is not None:
        device = torch.device("cuda", local_rank)
    return device
