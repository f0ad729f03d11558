"""The registry of datasets: the name `data.name` takes, to its loader and what the rest of the
tool needs to know about it before loading it. config.py reads it for the dataset choices and
their rules, resources.py for the memory a run needs, data.load for the loader.

Adding a dataset: its loader function (in data.py, or a module of its own), and one entry here.
Loaders are imported when a dataset is loaded, so that reading this table (to check a config,
to list keys) does not load torch."""

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    summary: str                        # a few words for `vae keys` and the docs
    loader: str                         # "module.function" in vae_cli: the `data` section -> its splits (see data.load)
    bytes_per_value: int                # how a pixel of either split is held: 1 (8-bit source, uint8) or 4 (float32)
    labelled: bool                      # its images can come with class labels
    labels: str = "labels"              # what its labels are, for messages
    image_size: int | None = None       # the one size its images have, where fixed
    channels: tuple[int, ...] = (1, 3)  # the channel counts it can give
    sizes: tuple[int, int] | None = None  # (training, test) images, where fixed
    # On the CPU its pixels are mapped from the decoded-image cache (cache.py): page cache, which
    # the kernel reads in and drops as it needs, not memory a run must find free.
    mapped: bool = False
    # What its pictures show is known (a folder of one's own may hold anything, moons too): only a
    # run on such data is compared with the built-in moons model (familiarity.comparable_with_builtin).
    known_subject: bool = True

    def loader_function(self):
        """The function `loader` names, imported now."""
        module, name = self.loader.split(".")
        return getattr(importlib.import_module(f".{module}", __package__), name)

    @property
    def shape_rule(self) -> str | None:
        """What its images must be, as a config must say it; None if anything goes."""
        colour = "grayscale" if self.channels == (1,) else "RGB" if self.channels == (3,) else None
        if self.image_size is not None:
            return f"{self.image_size}x{self.image_size} {colour or ''}".strip()
        return colour


DATASETS = {
    "moons": Dataset("moons rendered on the fly, no download", "data.load_moons", bytes_per_value=4,
                     labelled=False, channels=(1,)),
    "mnist": Dataset("handwritten digits", "data.load_mnist", bytes_per_value=1, labelled=True, labels="digits",
                     image_size=28, channels=(1,), sizes=(60_000, 10_000)),
    "fashion-mnist": Dataset("clothing pictures", "data.load_fashion_mnist", bytes_per_value=1, labelled=True,
                             labels="clothing classes", image_size=28, channels=(1,), sizes=(60_000, 10_000)),
    "folder": Dataset("your own images", "data.load_folder", bytes_per_value=1, labelled=True,
                      labels="one subfolder per class", mapped=True, known_subject=False),
}
