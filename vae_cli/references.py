"""What `vae interpolate` takes as an image: a file, or a dataset image such as `test:7`.

Parsed without torch, so that a mistyped path or index fails in a fraction of a second instead
of after torch has loaded (seconds)."""

import re
from pathlib import Path

from .errors import VaeError

DATASET_REFERENCE = re.compile(r"^(train|test):(-?\d+)$")


def dataset_image(reference: str) -> tuple[str, int] | None:
    """(split, index) for a dataset image such as test:7, None for a file (a file of that
    name wins)."""
    match = DATASET_REFERENCE.match(reference)
    if match is None or Path(reference).exists():
        return None
    return match.group(1), int(match.group(2))


def check_image_file(path: Path) -> None:
    """A one-line error unless `path` is a file (whether PIL can read it is found out later)."""
    if not path.is_file():
        problem = "a folder, not an image file" if path.is_dir() else "no such file"
        raise VaeError(f"{path}: {problem}: check the path")


def check_files(references: list[str]) -> None:
    """Every reference that names a file names one that exists. (A dataset index is checked
    against the split's size once the data are loaded: data.image_at.)"""
    for reference in references:
        if dataset_image(reference) is None:
            check_image_file(Path(reference))


def name_part(reference: str) -> str:
    """A reference (or a class name) as part of an output file's name: a file by its stem,
    test:7 as test-7; anything but letters, digits, - and _ becomes -."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(reference).stem if ":" not in reference else reference)
