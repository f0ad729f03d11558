"""The configs that ship with vae-cli: where they live, finding one by bare name, describing them.

The top-level configs/ folder is installed as vae_cli/configs/ (pyproject.toml maps it there),
so `vae train --config mnist.yaml` works from any folder after a plain `pip install`.
Each config's leading comment describes it; its first sentence is the one-line description and
a line `# epoch: ...` says how long one epoch takes (benchmarks/config_epochs.py measures it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from . import config as config_module
from .config import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CHECKOUT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"^#\s*epoch:\s*(.+)$")


def folder() -> Traversable:
    """The shipped configs: vae_cli/configs/ when installed from a wheel, else (a source checkout
    or an editable install) the configs/ folder beside vae_cli/."""
    installed = resources.files("vae_cli") / "configs"
    return installed if installed.is_dir() else CHECKOUT / "configs"


def names() -> list[str]:
    return sorted(entry.name.removesuffix(".yaml") for entry in folder().iterdir()
                  if entry.name.endswith(".yaml"))


def resolve(reference: Path) -> tuple[Path | Traversable, str]:
    """What `--config` names, and that in words for the head of the run's config.yaml: an
    existing file (which always wins), else the shipped config of that bare name (`mnist` or
    `mnist.yaml`)."""
    if reference.is_file():
        return reference, f"the file {reference.resolve()}"
    name = reference.name.removesuffix(".yaml")
    if reference.parent == Path(".") and name in names():
        return folder() / f"{name}.yaml", f"the shipped config {name}.yaml of vae-cli {__version__}"
    raise ConfigError(f"config file {reference} does not exist, and no shipped config is called "
                      f"{name!r}: pass a file, or one of {', '.join(names())} (`vae configs` describes them)")


@dataclass
class Entry:
    name: str
    description: str
    dataset: str
    model: str
    epoch: str


def leading_comment(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def describe(name: str) -> Entry:
    text = (folder() / f"{name}.yaml").read_text(encoding="utf-8")
    comment = leading_comment(text)
    # The table shows the figure; the machine it was measured on stays in the file.
    epoch = next((m.group(1).split(" (")[0] for m in map(EPOCH_LINE.match, comment) if m), "-")
    prose = " ".join(line.lstrip("#").strip() for line in comment if not EPOCH_LINE.match(line))
    description = re.split(r"[.:](?:\s|$)", prose, maxsplit=1)[0].strip()
    config = config_module.from_dict(config_module.read_yaml(folder() / f"{name}.yaml"), f"{name}.yaml")
    model = config.model
    network = f" {model.network}" if model.applies("network") else ""
    return Entry(name, description, config.data.name, f"{model.kind}{network} z={model.latent_dim}", epoch)


def entries() -> list[Entry]:
    return [describe(name) for name in names()]
