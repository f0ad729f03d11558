"""The embedded dataset: grayscale pictures of the moon at phases from new to full.

A moon of phase p (the lit fraction of the disk: 0 new, 0.5 half, 1 full) is lit from the
right. A point of the disk at (u, v), in units of the radius, is lit when u > (1 - 2p)·sqrt(1 - v²):
the terminator is half an ellipse, which is why the lit area is exactly the fraction p.
Each training image varies in size, position and brightness, so the data are a real
distribution whose main factor of variation is the phase.
"""

import torch

DEFAULT_RADIUS = 0.34  # of the image size
DEFAULT_BRIGHTNESS = 1.0


def render(phase: torch.Tensor, radius: torch.Tensor, center_x: torch.Tensor,
           center_y: torch.Tensor, brightness: torch.Tensor, size: int) -> torch.Tensor:
    """Moons as an (n, 1, size, size) tensor in [0, 1]; every argument is a length-n tensor,
    radius and centre in units of the image size. Edges are anti-aliased by coverage."""
    pixel = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = pixel.view(1, size, 1), pixel.view(1, 1, size)
    r = radius.view(-1, 1, 1)
    u = (x - center_x.view(-1, 1, 1)) / r
    v = (y - center_y.view(-1, 1, 1)) / r
    distance = torch.sqrt(u ** 2 + v ** 2)
    pixels_per_radius = r * size
    disk = ((1 - distance) * pixels_per_radius + 0.5).clamp(0, 1)
    terminator = (1 - 2 * phase.view(-1, 1, 1)) * torch.sqrt((1 - v ** 2).clamp(min=0))
    lit = ((u - terminator) * pixels_per_radius + 0.5).clamp(0, 1)
    return (disk * lit * brightness.view(-1, 1, 1)).unsqueeze(1)


def render_one(phase: float, size: int = 28) -> torch.Tensor:
    """One centred moon of the given phase at the default size and full brightness: (1, size, size)."""
    one = torch.ones(1)
    return render(one * phase, one * DEFAULT_RADIUS, one * 0.5, one * 0.5,
                  one * DEFAULT_BRIGHTNESS, size)[0]


def sample(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random moons (images, phases), the same for the same seed on every machine."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=g)

    phase = uniform(0.0, 1.0)
    radius = uniform(0.28, 0.40)
    center_x = 0.5 + uniform(-0.06, 0.06)
    center_y = 0.5 + uniform(-0.06, 0.06)
    brightness = uniform(0.75, 1.0)
    return render(phase, radius, center_x, center_y, brightness, size), phase
