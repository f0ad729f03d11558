"""Pictures in and out: reading image files the way training data are read, writing grids,
strips and GIFs. Every file is written to a temporary name first and renamed, so a crash
never leaves half a PNG behind."""

import io
import math
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torchvision.utils import make_grid

from .errors import VaeError
from .files import write_bytes
from .references import check_image_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PIL_MODES = {1: "L", 3: "RGB"}


FRAME_FILL = 0.7  # share of the frame that the object's longer side spans after cropping to it
WORKING_SIZE = 1024  # longest side an input is reduced to before it is framed (a phone photo is 4000)
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def open_image(path: Path, channels: int) -> tuple[Image.Image, str, list[str]]:
    """The picture as a camera meant it, in grayscale (L) or RGB, with its file's own mode and
    notes on what was done that a person would not expect.

    EXIF orientation is applied; 16-bit pixels are scaled to 8 bits; an animated image gives
    its first frame; transparent pixels are composited onto black."""
    path = Path(path)
    check_image_file(path)
    notes = []
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            image.load()
            if frames > 1:
                notes.append(f"used the first of its {frames} frames")
            mode = image.mode
            image = ImageOps.exif_transpose(image)
            if mode in SIXTEEN_BIT_MODES:
                # convert("L") would clip every value above 255 to white.
                image = image.convert("I").point(lambda value: value / 257).convert("L")
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (0, 0, 0, 255))
                image = Image.alpha_composite(background, image)
            image = image.convert(PIL_MODES[channels])
    except UnidentifiedImageError:
        raise VaeError(f"{path}: not an image file PIL can read: pass a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise VaeError(f"{path}: the image is corrupt or truncated ({error}): re-export it") from None
    return image, mode, notes


def read_image(path: Path, channels: int, size: int, crop: str = "none") -> tuple[torch.Tensor, str, list[str]]:
    """A (channels, size, size) uint8 tensor, the file's own PIL mode, and notes (see open_image).

    The conversion, the same for training folders and interpolation inputs: open_image, then
    with crop="object" the square around the bright object (frame_object), else the shorter
    side resized to `size` (bilinear, antialiased) and the centre square cropped."""
    image, mode, notes = open_image(path, channels)
    if crop == "object":
        image.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.BILINEAR)
        pixels = frame_object(TF.pil_to_tensor(image).unsqueeze(0).float() / 255, size)[0]
        return (pixels * 255).round().to(torch.uint8), mode, notes
    image = TF.resize(image, size, antialias=True)
    image = TF.center_crop(image, size)
    return TF.pil_to_tensor(image), mode, notes


def frame_object(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] cropped to a square around their bright object, the
    object (for a moon: its whole disk, see _object_square) spanning FRAME_FILL of it, and
    resampled to (N, C, size, size); an image where nothing stands out keeps its whole frame.

    The object is what is brighter than the sky (the darkest 5%) by 30% of the way to the
    brightest spot, after an average over 2% of the picture's size dims stars and noise. Where the square reaches past
    the picture it shows the sky's colour. Each output pixel is the average of the input
    area it covers, so large inputs shrink without aliasing."""
    n, _, height, width = images.shape
    window = max(3.0, 0.02 * max(height, width))
    gray = images.mean(1)
    gray = _area_matrix(torch.arange(height) + 0.5 - window / 2, window, height) @ gray \
        @ _area_matrix(torch.arange(width) + 0.5 - window / 2, window, width).T
    flat = gray.flatten(1)
    sky_gray = flat.kthvalue(max(1, int(0.05 * flat.shape[1])), dim=1).values.view(n, 1, 1)
    brightest = flat.max(1).values.view(n, 1, 1)
    bright = (gray > sky_gray + 0.3 * (brightest - sky_gray)) & (brightest - sky_gray > 0.1)
    boxes = torch.tensor([[0.0, 0.0, width, height]]).repeat(n, 1)
    for mask, (low, high) in ((bright.any(dim=1), (0, 2)), (bright.any(dim=2), (1, 3))):
        index = torch.arange(mask.shape[1]).expand_as(mask)
        found = mask.any(1)
        boxes[found, low] = torch.where(mask, index, mask.shape[1]).min(1).values[found].float()
        boxes[found, high] = torch.where(mask, index, -1).max(1).values[found].float() + 1
    centre, span = _object_square(bright, boxes)
    side = span / FRAME_FILL
    dark = (gray <= sky_gray).flatten(1).unsqueeze(1)
    sky = ((images.flatten(2) * dark).sum(2) / dark.sum(2))[:, :, None, None]
    step = (side / size).view(n, 1)
    starts = step * torch.arange(size) - side.view(n, 1) / 2
    rows = _area_matrix(centre[:, 1:2] + starts, step, height)
    columns = _area_matrix(centre[:, 0:1] + starts, step, width)
    # Area outside the picture gets no weight: measured from the sky, what is missing is sky.
    framed = rows.unsqueeze(1) @ (images - sky) @ columns.transpose(-1, -2).unsqueeze(1)
    return (framed + sky).clamp(0, 1)


LIMB_DIRECTIONS = 72  # directions the object's outline is measured in (every 5 degrees)
LIMB_WINDOW = 36      # how many adjacent ones (180 degrees) follow one circle along a moon's limb
LIMB_TOLERANCE = 0.03  # the largest misfit to that circle, in radii (plus half a pixel), of a round object


def _object_square(bright: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre (x, y) and the side of the square each bright object spans: the disk of a
    moon, however much of it is lit and from whichever side; the box of anything else.

    A moon's lit part reaches the disk's circle along its limb, half the circle, wherever the
    sun stands; its terminator (a half ellipse) lies inside. So the object's extent in each of
    LIMB_DIRECTIONS directions (its support function, R + centre·direction for a disk) is fitted
    by least squares to a circle over every window of LIMB_WINDOW adjacent directions, and the
    window that fits best gives the disk: a half moon sits where the full moon would, lit from
    any angle. An object whose best window misfits by more than LIMB_TOLERANCE is not round,
    and keeps its box."""
    n, height, width = bright.shape
    column = torch.arange(width).expand_as(bright)
    rows = bright.any(2)
    left_edge = torch.where(bright, column, width).min(2).values.float()
    right_edge = torch.where(bright, column, -1).max(2).values.float() + 1
    # Each row's outermost pixels, as disks of half a pixel: the object's extent in any direction is one of theirs.
    middle = torch.arange(height, dtype=torch.float32).expand(n, height) + 0.5
    x = torch.cat([left_edge + 0.5, right_edge - 0.5], 1)
    y = torch.cat([middle, middle], 1)
    angle = torch.arange(LIMB_DIRECTIONS) * (2 * math.pi / LIMB_DIRECTIONS)
    direction = torch.stack([angle.cos(), angle.sin()], 1)                        # (K, 2)
    reach = x.unsqueeze(1) * direction[:, 0:1] + y.unsqueeze(1) * direction[:, 1:2] + 0.5  # (n, K, points)
    extent = torch.where(rows.repeat(1, 2).unsqueeze(1), reach, -math.inf).amax(2)  # (n, K)
    # Least squares per window: extent ≈ centre·direction + radius, one pseudo-inverse per window.
    window = (torch.arange(LIMB_DIRECTIONS).view(-1, 1) + torch.arange(LIMB_WINDOW)) % LIMB_DIRECTIONS
    design = torch.cat([direction[window], torch.ones(LIMB_DIRECTIONS, LIMB_WINDOW, 1)], 2)  # (K, L, 3)
    measured = extent[:, window]                                                 # (n, K, L)
    fit = torch.einsum("kpl,nkl->nkp", torch.linalg.pinv(design), measured)       # (n, K, 3)
    misfit = (torch.einsum("klp,nkp->nkl", design, fit) - measured).square().mean(2).sqrt()
    # The disk holds the whole lit part: a circle fitted across the terminator leaves the limb outside it.
    outside = (extent.unsqueeze(1) - fit[..., :2] @ direction.T - fit[..., 2:]).amax(2).clamp(min=0)
    best = (misfit + outside).min(1)
    disk = fit[torch.arange(n), best.indices]
    # Half a pixel for where the outline's pixels happen to fall.
    round_object = rows.any(1) & (best.values <= LIMB_TOLERANCE * disk[:, 2] + 0.5)
    centre = torch.where(round_object.view(-1, 1), disk[:, :2], (boxes[:, :2] + boxes[:, 2:]) / 2)
    side = torch.where(round_object, 2 * disk[:, 2], (boxes[:, 2:] - boxes[:, :2]).max(1).values)
    return centre, side


def _area_matrix(starts: torch.Tensor, step, length: int) -> torch.Tensor:
    """Weights (..., len(starts), length): output pixel j is the mean of the input pixels over
    [starts[j], starts[j] + step), pixel i covering [i, i + 1)."""
    pixel = torch.arange(length, dtype=torch.float32)
    low, high = starts.unsqueeze(-1), (starts + step).unsqueeze(-1)
    overlap = (torch.minimum(high, pixel + 1) - torch.maximum(low, pixel)).clamp(min=0)
    return overlap / (step.unsqueeze(-1) if torch.is_tensor(step) else step)


def grid_columns(n: int) -> int:
    """Columns of the most nearly square grid for n images."""
    return math.ceil(math.sqrt(n))


def _atomic_save(image: Image.Image, path: Path, **options) -> None:
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise VaeError(f"{path}: unknown image type '{path.suffix}': use a .png (or .gif) file name")
    encoded = io.BytesIO()
    image.save(encoded, format=image_format, **options)
    write_bytes(path, encoded.getbuffer())


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


def save_each(images: torch.Tensor, folder: Path, names: list[str]) -> Path:
    """Write each image (n, C, H, W) as its own PNG, without padding, into `folder` under
    `names` (one per image); returns the folder."""
    for image, name in zip(images, names, strict=True):
        save_grid(image.unsqueeze(0), Path(folder) / name, columns=1, padding=0)
    return Path(folder)


def save_gif(frames: torch.Tensor, path: Path, milliseconds_per_frame: int = 120) -> Path:
    """An animated GIF that plays frames (n, C, H, W) forwards then backwards, looping."""
    pictures = [to_pil(frame.unsqueeze(0), 1, padding=0) for frame in frames]
    there_and_back = pictures + pictures[-2:0:-1]
    first, rest = there_and_back[0], there_and_back[1:]
    _atomic_save(first, Path(path), save_all=True, append_images=rest,
                 duration=milliseconds_per_frame, loop=0)
    return Path(path)


LABEL_WIDTH = 150


def save_labeled_rows(rows: list[tuple[str, torch.Tensor]], path: Path, scale: int = 2) -> Path:
    """One picture of labelled rows: a caption on the left, then a row of images (n, C, H, W)."""
    strips = [to_pil(images, len(images)).convert("RGB") for _, images in rows]
    strips = [s.resize((s.width * scale, s.height * scale), Image.NEAREST) for s in strips]
    canvas = Image.new("RGB", (LABEL_WIDTH + max(s.width for s in strips), sum(s.height for s in strips)), "white")
    draw, top = ImageDraw.Draw(canvas), 0
    for (label, _), strip in zip(rows, strips):
        canvas.paste(strip, (LABEL_WIDTH, top))
        draw.multiline_text((6, top + strip.height // 2 - 12), label, fill="black")
        top += strip.height
    _atomic_save(canvas, Path(path))
    return Path(path)
