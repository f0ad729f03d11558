"""Pictures in and out: reading image files the way training data are read, writing grids,
strips and GIFs. Every file is written to a temporary name first and renamed, so a crash
never leaves half a PNG behind."""

import math
import os
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torchvision.utils import make_grid

from .errors import VaeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PIL_MODES = {1: "L", 3: "RGB"}


def read_image(path: Path, channels: int, size: int) -> tuple[torch.Tensor, str]:
    """A (channels, size, size) float tensor in [0, 1] and the file's own PIL mode.

    Conversion, the same for training folders and interpolation inputs: transparent pixels
    are composited onto black, the image is converted to grayscale (L) or RGB, its shorter
    side is resized to `size` (bilinear, antialiased) and the centre square is cropped."""
    path = Path(path)
    if not path.is_file():
        raise VaeError(f"{path}: no such file: check the path")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, image)
            image = image.convert(PIL_MODES[channels])
    except UnidentifiedImageError:
        raise VaeError(f"{path}: not an image file PIL can read: pass a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise VaeError(f"{path}: the image is corrupt or truncated ({error}): re-export it") from None
    image = TF.resize(image, size, antialias=True)
    image = TF.center_crop(image, size)
    return TF.pil_to_tensor(image).float() / 255, mode


def grid_columns(n: int) -> int:
    """Columns of the most nearly square grid for n images."""
    return math.ceil(math.sqrt(n))


def _atomic_save(image: Image.Image, path: Path, **options) -> None:
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise VaeError(f"{path}: unknown image type '{path.suffix}': use a .png (or .gif) file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format=image_format, **options)
    os.replace(temporary, path)


def to_pil(images: torch.Tensor, columns: int, padding: int = 2) -> Image.Image:
    """Images (n, C, H, W) in [0, 1] laid out in a grid with a gray border."""
    grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=columns, padding=padding,
                     pad_value=0.5)
    # make_grid repeats a single channel three times; grayscale stays grayscale on disk.
    return TF.to_pil_image(grid[:images.shape[1]])


def save_grid(images: torch.Tensor, path: Path, columns: int | None = None, padding: int = 2) -> Path:
    """Write images (n, C, H, W) as one PNG grid, square-ish unless `columns` is given."""
    _atomic_save(to_pil(images, columns or grid_columns(len(images)), padding), Path(path))
    return Path(path)


def save_gif(frames: torch.Tensor, path: Path, milliseconds_per_frame: int = 120) -> Path:
    """An animated GIF that plays frames (n, C, H, W) forwards then backwards, looping."""
    pictures = [to_pil(frame.unsqueeze(0), 1, padding=0) for frame in frames]
    there_and_back = pictures + pictures[-2:0:-1]
    first, rest = there_and_back[0], there_and_back[1:]
    _atomic_save(first, Path(path), save_all=True, append_images=rest,
                 duration=milliseconds_per_frame, loop=0)
    return Path(path)
