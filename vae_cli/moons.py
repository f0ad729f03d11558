"""The embedded dataset: grayscale pictures of the moon at phases from new to full.

A moon of phase p (the lit fraction of the disk: 0 new, 0.5 half, 1 full) lit from the right
lights the point (u, v) of its disk, in units of the radius, when u > (1 - 2p)·sqrt(1 - v²):
the terminator is half an ellipse, which is why the lit area is exactly the fraction p. The sun
may stand at any angle a in the picture's plane (counterclockwise from the right: 0 lights the
moon from the right, as a waxing moon seen from the north, 90 from above, 180 from the left):
then u and v are measured along and across the direction towards the sun.

Two kinds are drawn. `render` draws the clean kind: a flat grey disk on black. `photo_sample`
draws what a camera sees, so that a model trained on it works on a person's own pictures:
the same moon (one fixed map of darker maria and surface texture, at a random strength),
lit from any angle (waxing and waning, the terminator at any tilt), from a small disk in the frame to nearly filling it, on a sky from black
to dark grey with noise and a few stars, with random brightness, contrast, blur, a soft
terminator, blurred edges and sensor noise. The phase stays the main factor of variation.
`draw` writes one of either kind to a PNG: `vae moon`'s work.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import files
from .images import save_grid

DEFAULT_RADIUS = 0.34  # of the image size
DEFAULT_BRIGHTNESS = 1.0
STARS = 8
SURFACE_SEED = 7  # the one moon every photo-like picture shows
# Maria as (u, v, radius) on the disk, placed roughly like the real near side's.
MARIA = [(-0.35, -0.45, 0.30), (-0.10, -0.15, 0.22), (0.25, -0.35, 0.20), (-0.55, 0.05, 0.25),
         (0.30, 0.05, 0.18), (-0.25, 0.40, 0.20), (0.50, -0.05, 0.12)]


def render(phase: torch.Tensor, radius: torch.Tensor, center_x: torch.Tensor,
           center_y: torch.Tensor, brightness: torch.Tensor, size: int,
           sun_angle: torch.Tensor | None = None) -> torch.Tensor:
    """Clean moons as an (n, 1, size, size) tensor in [0, 1]; every argument is a length-n
    tensor, radius and centre in units of the image size, the sun's angle in radians (default:
    from the right). Edges are anti-aliased by coverage."""
    u, v, pixels_per_radius = _disk_coordinates(radius, center_x, center_y, size)
    along, across = _turned(u, v, torch.zeros_like(phase) if sun_angle is None else sun_angle)
    disk = ((1 - torch.sqrt(u ** 2 + v ** 2)) * pixels_per_radius + 0.5).clamp(0, 1)
    lit = ((along - _terminator(phase, across)) * pixels_per_radius + 0.5).clamp(0, 1)
    return (disk * lit * brightness.view(-1, 1, 1)).unsqueeze(1)


def _disk_coordinates(radius, center_x, center_y, size):
    """Each pixel centre in units of the radius from the disk's centre: (u, v, pixels per radius)."""
    pixel = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    r = radius.view(-1, 1, 1)
    u = (pixel.view(1, 1, size) - center_x.view(-1, 1, 1)) / r
    v = (pixel.view(1, size, 1) - center_y.view(-1, 1, 1)) / r
    return u, v, r * size


def _turned(u, v, angle):
    """Disk coordinates (u, v) in a frame turned counterclockwise by `angle` (radians, per
    image): with the sun's angle, the coordinate towards the sun and across that direction.
    v points down the picture, so counterclockwise on screen is towards -v."""
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    return u * cos - v * sin, u * sin + v * cos


def _terminator(phase, v):
    return (1 - 2 * phase.view(-1, 1, 1)) * torch.sqrt((1 - v ** 2).clamp(min=0))


def render_one(phase: float, size: int = 28, sun_angle_degrees: float = 0.0) -> torch.Tensor:
    """One clean centred moon of the given phase at full brightness: (1, size, size)."""
    one = torch.ones(1)
    return render(one * phase, one * DEFAULT_RADIUS, one * 0.5, one * 0.5,
                  one * DEFAULT_BRIGHTNESS, size, one * math.radians(sun_angle_degrees))[0]


def sample(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random clean moons (images, phases), the same for the same seed on every machine."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=g)

    phase = uniform(0.0, 1.0)
    radius = uniform(0.28, 0.40)
    center_x = 0.5 + uniform(-0.06, 0.06)
    center_y = 0.5 + uniform(-0.06, 0.06)
    brightness = uniform(0.75, 1.0)
    return render(phase, radius, center_x, center_y, brightness, size), phase


def _surface(resolution: int = 96) -> torch.Tensor:
    """The moon's darkening map over the square [-1, 1]² of disk coordinates: (2, res, res),
    maria in channel 0 and texture in channel 1, each in [0, 1]. Fixed: every photo shows
    the same moon."""
    g = torch.Generator().manual_seed(SURFACE_SEED)
    axis = torch.linspace(-1, 1, resolution)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    maria = torch.zeros(resolution, resolution)
    for mu, mv, r in MARIA:
        maria = torch.maximum(maria, torch.exp(-((u - mu) ** 2 + (v - mv) ** 2) / (2 * r ** 2)))
    texture = torch.zeros(1, 1, resolution, resolution)
    for cells in (4, 8, 16, 32, 64):  # noise at several scales, finer ones weaker
        field = torch.rand(1, 1, cells, cells, generator=g)
        texture += F.interpolate(field, size=resolution, mode="bicubic", align_corners=True) / math.sqrt(cells)
    texture = texture[0, 0]
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    return torch.stack([maria, texture])


def _lunar_lambert(phase, toward_light, distance, weight):
    """Brightness of the sunlit sphere seen face-on, by the lunar-Lambert law (McEwen 1991):
    weight·2cos(i)/(cos(i) + cos(e)) + (1 - weight)·cos(i), with i the sun's and e the viewer's
    angle to the surface normal. The first part, Lommel-Seeliger's, is the real moon's: flat at
    full moon, bright at the limb and fading to nothing at the terminator of a half moon."""
    cos_e = torch.sqrt((1 - distance ** 2).clamp(min=0))
    cos_phase_angle = (2 * phase - 1).view(-1, 1, 1)  # the lit fraction is (1 + cos)/2
    cos_i = (toward_light * torch.sqrt(1 - cos_phase_angle ** 2) + cos_e * cos_phase_angle).clamp(min=0)
    weight = weight.view(-1, 1, 1)
    return weight * 2 * cos_i / (cos_i + cos_e + 1e-6) + (1 - weight) * cos_i


def _mix(weight, a, b):
    """weight·a + (1 - weight)·b per image."""
    weight = weight.view(-1, 1, 1)
    return weight * a + (1 - weight) * b


def photo_sample(n: int, size: int, seed: int, phase: torch.Tensor | None = None,
                 sun_angle: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n photo-like moons (n, 1, size, size) in [0, 1] and their phases; random phases and
    sun angles (radians, uniform over the circle) unless given. The same for the same seed on
    every machine."""
    g = torch.Generator().manual_seed(seed)

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=g)

    if phase is None:
        phase = uniform(0.03, 1.0)
    if sun_angle is None:
        sun_angle = uniform(0.0, 2 * math.pi)
    radius = uniform(0.15, 0.45)
    room = 0.5 - radius  # how far the centre may move with the disk still inside the frame
    center_x = 0.5 + uniform(-1, 1) * room
    center_y = 0.5 + uniform(-1, 1) * room
    u, v, pixels_per_radius = _disk_coordinates(radius, center_x, center_y, size)
    u, v = torch.broadcast_tensors(u, v)

    # The surface turns with the terminator's tilt (the observer's latitude and hour turn the
    # whole moon), not with the light: a waning moon shows the same maria as a waxing one.
    tilt = torch.remainder(sun_angle + math.pi / 2, math.pi) - math.pi / 2
    maps = F.grid_sample(_surface().expand(n, -1, -1, -1), torch.stack(_turned(u, v, tilt), dim=-1),
                         mode="bilinear", padding_mode="border", align_corners=True)
    albedo = (1 - uniform(0.0, 0.3).view(-1, 1, 1) * maps[:, 0]
              - uniform(0.0, 0.25).view(-1, 1, 1) * maps[:, 1])
    distance = torch.sqrt(u ** 2 + v ** 2)
    # A blurred edge: the disk fades out over `blur` pixels (a camera's focus and shake).
    blur = uniform(1.0, 1.0 + 2.5 * size / 56).view(-1, 1, 1)
    disk = ((1 - distance) * pixels_per_radius / blur + 0.5).clamp(0, 1)
    toward_light, across = _turned(u, v, sun_angle)
    # Light fades towards the terminator over `softness` radii: sharp in some pictures, gradual
    # in others.
    softness = torch.maximum(uniform(0.02, 0.6).view(-1, 1, 1), blur / pixels_per_radius)
    lit = ((toward_light - _terminator(phase, across)) / softness + 0.5).clamp(0, 1)
    # The blurred rim just outside the disk takes the limb's shading.
    inward = (0.99 / distance.clamp(min=1e-6)).clamp(max=1)
    sphere = _lunar_lambert(phase, toward_light * inward, distance * inward, uniform(0.5, 1.0))
    shading = _mix(uniform(0.0, 1.0), lit, sphere)
    moon = disk * shading * albedo * uniform(0.6, 1.0).view(-1, 1, 1)

    sky_level = uniform(0.0, 0.22).view(-1, 1, 1)
    gradient = uniform(-0.05, 0.05).view(-1, 1, 1) * (torch.arange(size) / size).view(1, size, 1)
    sky = (sky_level + gradient).clamp(min=0).expand(n, size, size).reshape(n, -1).clone()
    # Up to STARS single-pixel stars; those with a brightness below zero are not there.
    position = torch.randint(size * size, (n, STARS), generator=g)
    star = (torch.rand(n, STARS, generator=g) * 1.6 - 0.6).clamp(min=0)
    sky = sky.scatter_add(1, position, star).view(n, size, size)
    # The sky's glow lies in front of the moon: the dark part of the disk is as bright as the sky.
    image = (moon + sky).unsqueeze(1)

    image = image + uniform(0.0, 0.04).view(-1, 1, 1, 1) * torch.randn(image.shape, generator=g)
    gamma = uniform(0.75, 1.35).view(-1, 1, 1, 1)
    return image.clamp(0, 1) ** gamma, phase


def draw(phase: float, out: Path, size: int = 28, photo: bool = False, sun_angle_degrees: float = 0.0,
         seed: int = 0) -> Path:
    """One moon of `phase`, size x size pixels, written to `out` (checked writable first) as a
    PNG: a clean centred disk, or with `photo` a photo-like moon as in the default training
    data, its camera's randomness drawn from `seed`; the sun at `sun_angle_degrees` (see
    `render`). Returns the file."""
    files.check_can_write(out)
    if photo:
        image = photo_sample(1, size, seed, phase=torch.tensor([phase]),
                             sun_angle=torch.tensor([math.radians(sun_angle_degrees)]))[0]
    else:
        image = render_one(phase, size, sun_angle_degrees).unsqueeze(0)
    return save_grid(image, out, columns=1, padding=0)
