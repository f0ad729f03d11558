"""Datasets, decoded once into tensors on the training device and batched by index.

No per-item PIL or transform work happens inside an epoch: every loader below (the registry
of datasets, datasets.py, names each one) returns each split as one tensor (N, C, H, W), and an
epoch is a seeded permutation of row indices. 8-bit sources (MNIST, image folders) keep their
training split as uint8, a quarter of the memory, and each batch becomes float in [0, 1] when
it is taken.
"""

import errno
import itertools
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import PIL
import torch
import torchvision
from rich.markup import escape
from rich.progress import track
from torchvision import datasets

from . import cache, moons
from .config import DataConfig
from .console import err_console, warn
from .datasets import DATASETS
from .errors import UsageError, VaeError
from .images import IMAGE_SUFFIXES, PIL_MODES, frame_object, read_image
from .references import dataset_image

DEFAULT_ROOT = "data"
MOONS_TRAIN_SEED, MOONS_TEST_SEED, SPLIT_SEED, BINARIZE_SEED = 1, 2, 3, 4


def as_float(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as float, from uint8 (0..255) or already float."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


@dataclass
class ImageData:
    train: torch.Tensor  # uint8 or float; use train_batch, train_batches or split("train")
    train_labels: torch.Tensor
    test: torch.Tensor  # uint8 or float like train: take it in batches through as_float
    test_labels: torch.Tensor
    dynamic_binarization: bool = False
    classes: list[str] | None = None  # the name of each class index, for labelled data

    def to(self, device) -> "ImageData":
        return ImageData(self.train.to(device), self.train_labels.to(device), self.test.to(device),
                         self.test_labels.to(device), self.dynamic_binarization, self.classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images, labels) of the train or test split, whole: a copy, 4 bytes a pixel."""
        images, labels = self.stored(name)
        return as_float(images), labels

    def stored(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images as stored, uint8 or float, labels) of the train or test split, to be taken in
        batches through as_float: a folder's images stay in the cache's map."""
        return (self.train, self.train_labels) if name == "train" else (self.test, self.test_labels)

    def train_batches(self, batch_size: int = 1000):
        """The training images in order, as float batches."""
        for start in range(0, len(self.train), batch_size):
            yield as_float(self.train[start:start + batch_size])

    def epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """The shuffled row order of one epoch, a function of (seed, epoch) alone so a resumed
        run sees exactly the order an uninterrupted one would."""
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train), generator=g).to(self.train.device)

    def train_batch(self, rows: torch.Tensor) -> torch.Tensor:
        batch = as_float(self.train[rows])
        # Dynamic binarization draws fresh binary pixels every time an image is seen.
        return torch.bernoulli(batch) if self.dynamic_binarization else batch


def data_root(config: DataConfig) -> Path:
    return Path(config.root or os.environ.get("VAE_DATA") or DEFAULT_ROOT)


MOON_RENDERERS = {"photo": moons.photo_sample, "clean": moons.sample}
MOONS_PER_CHUNK = 1024  # rendered at a time, to bound memory


def render_moons(config: DataConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n moons of the configured kind and their phases. With framing=object they are drawn
    at twice the size and go through the same crop as image files (images.frame_object)."""
    render = MOON_RENDERERS[config.moons]
    chunks = []
    for index, start in enumerate(range(0, n, MOONS_PER_CHUNK)):
        count = min(MOONS_PER_CHUNK, n - start)
        if config.framing == "object":
            images, phase = render(count, 2 * config.image_size, seed * 1000 + index)
            images = frame_object(images, config.image_size)
        else:
            images, phase = render(count, config.image_size, seed * 1000 + index)
        chunks.append((images, phase))
    return torch.cat([c[0] for c in chunks]), torch.cat([c[1] for c in chunks])


DRAWN_PHASES = 41  # phases from new to full in `drawn_moons`...
DRAWN_ANGLES = 8   # ...each lit from this many directions around the circle (vae moon --angle)


def drawn_moons(config: DataConfig) -> torch.Tensor | None:
    """The clean moons `vae moon` draws (phases from new to full, the sun all around, at the
    model's size and four times it), written and read back as `vae interpolate` reads an input
    file: pictures a moons model is meant to blend although its photo-like training moons are
    none of them. None for other datasets."""
    if config.name != "moons":
        return None
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for size in (config.image_size, 4 * config.image_size):
            for phase in torch.linspace(0, 1, DRAWN_PHASES).tolist():
                for angle in range(0, 360, 360 // DRAWN_ANGLES):
                    paths.append(moons.draw(phase, Path(folder) / f"{size}_{phase:.3f}_{angle}.png", size,
                                            sun_angle_degrees=angle))
        return torch.stack([as_float(read_image(path, config.channels, config.image_size, config.framing)[0])
                            for path in paths])


def load_moons(config: DataConfig):
    """The moons' labels are their phases, a continuous value: no classes."""
    train, train_phase = render_moons(config, config.train_size, MOONS_TRAIN_SEED)
    test, test_phase = render_moons(config, config.test_size, MOONS_TEST_SEED)
    return train, train_phase, test, test_phase, None


def _torchvision_loader(dataset_class, folder: str):
    def load(config: DataConfig):
        root = data_root(config)
        missing = (f"{folder} is not under {root / folder / 'raw'}: put the four *-ubyte.gz files "
                   f"there, or set data.root or VAE_DATA to the folder holding {folder}/raw")
        if not (root / folder / "raw").is_dir():
            # Checked here, before torchvision would create empty folders (or {folder}/{folder}
            # when the root is one level too deep) on its way to a download.
            hint = f" (the root is one level too deep: use {root.parent})" if (root / "raw").is_dir() else ""
            raise VaeError(missing + hint)
        splits = []
        for train in (True, False):
            try:
                dataset = dataset_class(root, train=train, download=True)
            except OSError as error:
                if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise VaeError(f"{root / folder / 'raw'} is read-only and the .gz files there need "
                                   f"unpacking: copy the folder somewhere writable and point data.root "
                                   f"or VAE_DATA at the copy") from None
                raise VaeError(f"{missing} ({error.strerror or type(error).__name__})") from None
            except RuntimeError:  # torchvision found files missing and could not download them
                raise VaeError(missing) from None
            splits += [dataset.data.unsqueeze(1), dataset.targets.clone()]
        # "0 - zero" for MNIST, "T-shirt/top" for Fashion-MNIST: named 0 and t-shirt/top.
        return (*splits, [name.split(" - ")[0].lower() for name in dataset.classes])
    return load


load_mnist = _torchvision_loader(datasets.MNIST, "MNIST")
load_fashion_mnist = _torchvision_loader(datasets.FashionMNIST, "FashionMNIST")


def _read_or_none(path: Path, channels: int, size: int, crop: str) -> torch.Tensor | None:
    try:
        return read_image(path, channels, size, crop)[0]
    except VaeError:
        return None


def image_files(root: Path) -> list[str]:
    """The image files under `root` (in every subfolder, not through links to folders), as
    paths relative to it with / between folders, sorted as paths sort (by folder, then name).

    Strings, not Path objects, found with os.scandir, which knows each entry's type without a
    stat: on 10,000 files this takes 0.2 s where Path.rglob took 2.5 s, most of it the garbage
    collector walking torch's objects again and again as the Paths piled up."""
    found, folders = [], [""]
    while folders:
        folder = folders.pop()
        with os.scandir(os.path.join(root, folder)) as entries:
            for entry in entries:
                name = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append(name)
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and entry.is_file():
                    found.append(name)
    return sorted(found, key=lambda name: name.replace("/", "\0"))  # "a/x" before "a-b/x", like Paths


def load_folder(config: DataConfig):
    """A folder's images, decoded once into the decoded-image cache (cache.py) and mapped from it."""
    root = Path(config.path)
    if not root.is_dir():
        raise VaeError(f"data.path {root} is not a folder: point it at a folder of images")
    files = image_files(root)
    # Everything that changes the pixels or the split: a cache made with other values is stale.
    settings = {"image_size": config.image_size, "channels": config.channels, "framing": config.framing,
                "test_fraction": config.test_fraction, "split_seed": SPLIT_SEED,
                "pillow": PIL.__version__, "torchvision": torchvision.__version__}
    stored = cache.load_or_build(root, files, settings, (config.channels, config.image_size, config.image_size),
                                 partial(_decode_folder, root=root, files=files, config=config))
    if stored.meta["unreadable"]:
        warn(f"skipped {stored.meta['unreadable']} unreadable image file(s) in {root}")
    n_test = stored.meta["n_test"]
    return (stored.images[n_test:], stored.labels[n_test:], stored.images[:n_test], stored.labels[:n_test],
            stored.meta["classes"])


def _decode_folder(builder, root: Path, files: list[str], config: DataConfig):
    """Decode every file into `builder`, labelled by its subfolder, and fix the split: a seeded
    shuffle whose first test_fraction is the test split."""
    folders = [name.rpartition("/")[0] or "." for name in files]
    class_names = sorted(set(folders))
    class_index = {name: index for index, name in enumerate(class_names)}
    unreadable = 0
    for folder, image in zip(folders, _decode(root, files, config)):
        if image is None:
            unreadable += 1
        else:
            builder.add(image, class_index[folder])
    count = len(files) - unreadable
    if count < 2:
        raise VaeError(f"{root} holds {count} readable image(s) "
                       f"({', '.join(sorted(IMAGE_SUFFIXES))}); a training and a test split need at least 2")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = min(count - 1, max(1, round(config.test_fraction * count)))
    classes = class_names if len(class_names) > 1 else None  # all in one folder: no labels
    return builder.finish(order, {"n_test": n_test, "classes": classes, "unreadable": unreadable})


DECODE_WINDOW = 2048


def _decode(root: Path, files: list[str], config: DataConfig):
    """Each file under `root` as training images are read (None where unreadable), in order."""
    # PIL releases the GIL while decoding, so threads decode a large folder on every core.
    pool = ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1))
    read = partial(_read_or_none, channels=config.channels, size=config.image_size, crop=config.framing)
    # Files are handed to the pool a window at a time: pending work and finished images waiting
    # their turn stay a few thousand, whatever the folder's size.
    windows = (pool.map(read, [root / name for name in files[start:start + DECODE_WINDOW]])
               for start in range(0, len(files), DECODE_WINDOW))
    try:
        yield from track(itertools.chain.from_iterable(windows), total=len(files),
                         description=escape(f"decoding {root}"), console=err_console,
                         transient=True, disable=len(files) < 1000)
    finally:
        pool.shutdown(cancel_futures=True)  # a build that failed does not wait for the rest of the folder


def load(config: DataConfig, device: torch.device | str = "cpu") -> ImageData:
    """The configured dataset, decoded, binarized as configured, and moved to `device`."""
    train, train_labels, test, test_labels, classes = DATASETS[config.name].loader_function()(config)
    if config.binarize != "none":
        # The test split is binarized once with a fixed seed in both modes, so test numbers
        # of different runs are measured on the same binary images.
        g = torch.Generator().manual_seed(BINARIZE_SEED)
        test = _binarized(test, g)
        if config.binarize == "static":
            train = _binarized(train, g)
    data = ImageData(train, train_labels, test, test_labels,
                     dynamic_binarization=config.binarize == "dynamic", classes=classes)
    return data.to(device)


def _binarized(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each pixel 1 with the probability of its gray value, else 0, in the images' own dtype:
    uint8 images get 0 or 255, which as_float turns into exactly 0 or 1."""
    binary = torch.bernoulli(as_float(images), generator=generator)
    return binary.mul_(255).to(torch.uint8) if images.dtype == torch.uint8 else binary


def image_at(images: torch.Tensor, index: int, split: str, asked_as: str) -> torch.Tensor:
    """images[index], or a one-line error naming the valid range and how the index was asked for."""
    if not 0 <= index < len(images):
        raise UsageError(f"{asked_as}: the {split} split has {len(images)} images (0..{len(images) - 1})")
    return images[index]


SINGLE_CHANNEL_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def load_references(references: list[str], config: DataConfig, on_note=warn) -> list[torch.Tensor]:
    """Images named by the user: files, converted exactly like training images, or dataset
    images such as test:7. What a person would not expect (a channel conversion, a first
    frame) goes to `on_note` as "file: note", once per file however often it is named. Every
    reference is read before anything is returned, so one bad input stops the command before
    it writes."""
    dataset = None
    images, noted = [], set()
    for reference in references:
        split_index = dataset_image(reference)
        if split_index is not None:
            split, index = split_index
            dataset = dataset or load(config)
            images.append(as_float(image_at(dataset.stored(split)[0], index, split, reference)))
            continue
        image, notes = read_input_image(Path(reference), config)
        for note in notes:
            if (reference, note) not in noted:
                on_note(f"{reference}: {note}")
                noted.add((reference, note))
        images.append(image)
    return images


def read_input_image(path: Path, config: DataConfig) -> tuple[torch.Tensor, list[str]]:
    """An image file converted exactly like the training images, as floats in [0, 1], and notes
    on what was done to it (including a change of its channel count)."""
    image, mode, notes = read_image(path, config.channels, config.image_size, config.framing)
    if (1 if mode in SINGLE_CHANNEL_MODES else 3) != config.channels:
        notes.append(f"converted {mode} to {PIL_MODES[config.channels]} to match the model")
    return as_float(image), notes
