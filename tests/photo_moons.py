"""A second, independent renderer of photo-like moons, for testing the tool on pictures it was
not trained on. Written apart from vae_cli/moons.py on purpose, with its own model of the moon
and the sky: a sphere lit by a distant sun with Lommel-Seeliger reflection (flat at full moon,
fading towards the terminator), an albedo of blurred-noise maria and dark-floored, bright-rimmed
craters, a dark-blue RGB sky with a glow gradient and soft stars, 2x supersampling, and
JPEG or PNG files as a camera would write them.

The phase is the lit fraction k of the disk; the phase angle f between sun and observer gives
k = (1 + cos f) / 2.
"""

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter


def _albedo(pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Albedo over the disk's bounding square (pixels x pixels), about 0.55 to 1."""
    noise = Image.fromarray((rng.random((pixels, pixels)) * 255).astype(np.uint8))
    blotches = np.asarray(noise.filter(ImageFilter.GaussianBlur(pixels / 12)), dtype=np.float64)
    blotches = (blotches - blotches.min()) / max(np.ptp(blotches), 1e-9)
    albedo = 1.0 - 0.9 * (blotches > 0.5) * (blotches - 0.5)  # maria where the field is high
    grain = np.asarray(noise.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64) / 255
    albedo *= 0.92 + 0.08 * grain
    y, x = np.mgrid[0:pixels, 0:pixels]
    for _ in range(int(rng.integers(6, 14))):  # craters: dark floor, bright rim
        cx, cy = rng.random(2) * pixels
        r = pixels * rng.uniform(0.02, 0.07)
        d = np.hypot(x - cx, y - cy) / r
        albedo *= 1 - 0.15 * (d < 0.85) + 0.12 * ((d >= 0.85) & (d < 1.1))
    return albedo.clip(0.3, 1.0)


def photo_moon(phase: float, size: int, sun_angle: float = 0.0, seed: int = 0,
               radius: float = 0.3, centre: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """An RGB picture (size x size) of the moon at lit fraction `phase`, the sun at `sun_angle`
    degrees counterclockwise from the right in the picture's plane (0: lit from the right, a
    waxing moon; 180: from the left, waning; 90: from above). radius and centre are fractions of
    the picture. The seed draws the sky and stars; the surface is the same moon for every seed."""
    big = 2 * size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:big, 0:big].astype(np.float64) + 0.5
    sky_glow = 0.35 + 0.65 * (y / big)
    sky = np.stack([6 + 10 * sky_glow, 10 + 16 * sky_glow, 28 + 40 * sky_glow], axis=-1)
    sky += rng.normal(0, 2.5, sky.shape)
    picture = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 12))):
        sx, sy = rng.random(2) * big
        s = rng.uniform(1.0, 2.5) * big / 600
        level = int(rng.integers(150, 255))
        draw.ellipse([sx - s, sy - s, sx + s, sy + s], fill=(level, level, int(level * 0.9)))
    picture = np.asarray(picture.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float64)

    r = radius * big
    nx, ny = (x - centre[0] * big) / r, (y - centre[1] * big) / r
    inside = nx ** 2 + ny ** 2 < 1
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0, None))
    angle = math.acos(2 * phase - 1)  # the phase angle
    turn = math.radians(sun_angle)  # y points down the picture: counterclockwise is towards -y
    sun = (math.sin(angle) * math.cos(turn), -math.sin(angle) * math.sin(turn), math.cos(angle))
    cos_i = nx * sun[0] + ny * sun[1] + nz * sun[2]
    reflect = np.where(cos_i > 0, 2 * cos_i / (cos_i + nz + 1e-9), 0.0)
    surface = np.ones((big, big))
    size_box = int(2 * r) + 2
    left, top = int(centre[0] * big - r), int(centre[1] * big - r)
    albedo = _albedo(size_box, np.random.default_rng(12345))  # the same moon every time
    box = surface[max(top, 0):top + size_box, max(left, 0):left + size_box]
    box[...] = albedo[max(-top, 0):max(-top, 0) + box.shape[0], max(-left, 0):max(-left, 0) + box.shape[1]]
    light = np.where(inside, reflect * surface, 0.0)
    moon_colour = np.array([196.0, 192.0, 180.0])
    picture = picture + light[..., None] * moon_colour  # the sky's glow lies in front of the moon
    image = Image.fromarray(picture.clip(0, 255).astype(np.uint8))
    return image.resize((size, size), Image.LANCZOS)


def write(path: Path, phase: float, size: int, **options) -> Path:
    """photo_moon(...) saved to `path` as JPEG (quality 88) or PNG, chosen by the suffix."""
    image = photo_moon(phase, size, **options)
    path = Path(path)
    image.save(path, **({"quality": 88} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    return path


# Pairs a person might blend: (name, sun angle, picture size, file type, moon radius, centre);
# lit from the right (0) and the left (180), each side with a JPEG and a PNG, a small and a big picture.
SCENES = [
    ("right-320-jpg", 0, 320, ".jpg", 0.30, (0.50, 0.48)),
    ("left-800-png-small", 180, 800, ".png", 0.10, (0.35, 0.62)),
    ("right-1000-png-big", 0, 1000, ".png", 0.46, (0.5, 0.5)),
    ("left-200-jpg", 180, 200, ".jpg", 0.33, (0.55, 0.45)),
]
# The terminator's tilts the tilted tests blend at, each waxing (the sun at the angle) and waning
# (the sun opposite), in scenes of these sizes and file types in turn.
TILTS = (0, 30, 60, 90, 135, 200)
TILTED_PICTURES = [(400, ".jpg", 0.28, (0.48, 0.52)), (640, ".png", 0.18, (0.6, 0.4)),
                   (240, ".png", 0.40, (0.5, 0.5))]


def tilted_scenes() -> list[tuple]:
    """SCENES-style entries for every tilt, waxing and waning: 12 pairs."""
    scenes = []
    for tilt in TILTS:
        for phase_side, sun_angle in (("waxing", tilt), ("waning", tilt + 180)):
            size, suffix, radius, centre = TILTED_PICTURES[len(scenes) % len(TILTED_PICTURES)]
            scenes.append((f"tilt{tilt}-{phase_side}", sun_angle % 360, size, suffix, radius, centre))
    return scenes
PHASES = {"full": 1.0, "half": 0.5, "three_quarter": 0.75}


def write_scene(folder: Path, name: str, sun_angle: float, size: int, suffix: str, radius: float,
                centre: tuple[float, float]) -> dict[str, Path]:
    """Full, half and three-quarter moon of one scene, each with its own sky and a slightly
    shifted moon, as files in `folder`: {"full": path, "half": ..., "three_quarter": ...}."""
    paths = {}
    for index, (label, phase) in enumerate(PHASES.items()):
        shifted = (centre[0] + 0.02 * (index - 1), centre[1] - 0.015 * (index - 1))
        paths[label] = write(Path(folder) / f"{name}-{label}{suffix}", phase, size, sun_angle=sun_angle,
                             seed=sum(map(ord, name)) + index, radius=radius, centre=shifted)
    return paths


def lit_fraction(image: torch.Tensor, full: torch.Tensor) -> float:
    """Lit area of `image` over that of `full` (tensors at the model's resolution): pixels
    brighter than the sky (the darkest 10% of the full moon's picture) by a fifth of the way to
    the moon (its brightest 5%). A fifth, not half: the moon fades gradually towards the
    terminator, and halfway would count this renderer's three-quarter moon as 0.6 (a fifth
    gives 0.72 to 0.74, and 0.46 to 0.50 for the half moon)."""
    sky, moon = full.flatten().quantile(0.10), full.flatten().quantile(0.95)
    threshold = sky + 0.2 * (moon - sky)
    return float((image > threshold).sum() / (full > threshold).sum().clamp(min=1))
