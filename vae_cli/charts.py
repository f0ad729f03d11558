"""Charts drawn with matplotlib: the training curves and the latent scatter of `vae plot`.

curves.png in each run directory: the training curves drawn from metrics.jsonl, redrawn after
every epoch, for a person without TensorBoard. One panel for the loss (train and test) and one
per term the model reports (recon, kl, ...), against the epoch.

Drawing takes about a second on a laptop core, longer than a whole epoch of the small default
models: after an epoch the picture is redrawn unless that would spend more than a tenth of the
time since the last drawing, and always after the last epoch or when the run is stopped early.

matplotlib is imported here and only here, when a chart is drawn, so that the command line
stays fast (`vae --help` never loads it)."""

import io
import math
import time
from pathlib import Path
from typing import Callable

import torch

from . import files

NOT_CURVES = {"seconds", "images_per_s"}  # numbers of a metrics line that are no loss term
DRAWING_SHARE = 0.1  # of the training time, at most, outside the last epoch


class CurvesPicture:
    """Keeps `path` drawn from the metrics while a run trains."""

    def __init__(self, path: Path, title: str = ""):
        self.path, self.title = path, title
        self.cost, self.drawn_at = 0.0, -math.inf
        self.behind = False  # an epoch ended whose curves are not drawn yet

    def after_epoch(self, read_metrics: Callable[[], list[dict]], last: bool) -> None:
        started = time.perf_counter()
        if not last and (started - self.drawn_at) * DRAWING_SHARE < self.cost:
            self.behind = True
            return
        draw_curves(read_metrics(), self.path, self.title)
        self.drawn_at = time.perf_counter()
        self.cost, self.behind = self.drawn_at - started, False

    def catch_up(self, read_metrics: Callable[[], list[dict]]) -> None:
        """Draw the epochs skipped so far: a run that stops early (Ctrl-C) leaves its curves whole."""
        if self.behind:
            self.after_epoch(read_metrics, last=True)


def term_names(metrics: list[dict]) -> list[str]:
    """The loss terms of the records, in first-seen order, loss first: `train_X` and `test_X`
    become X (a term measured on either split is drawn)."""
    names = []
    for record in metrics:
        for key, value in record.items():
            split, _, name = key.partition("_")
            if (split in ("train", "test") and name not in names and name not in NOT_CURVES
                    and isinstance(value, (int, float)) and not isinstance(value, bool)):
                names.append(name)
    return sorted(names, key=lambda name: name != "loss")


def draw_curves(metrics: list[dict], path: Path, title: str = "") -> Path:
    """Write the curves of `metrics` (the records of metrics.jsonl) to `path`, atomically."""
    from matplotlib.ticker import MaxNLocator

    names = term_names(metrics)
    panels = max(1, len(names))
    figure = _new_figure((4 * panels, 3.4))
    # Fixed margins: matplotlib's automatic layouts cost more than the drawing itself.
    figure.subplots_adjust(left=0.7 / (4 * panels), right=1 - 0.15 / (4 * panels), bottom=0.15, top=0.84,
                           wspace=0.3)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax, name in zip(axes, names):
        for split, style in (("train", "-"), ("test", "--")):
            points = [(record["epoch"], record[f"{split}_{name}"]) for record in metrics
                      if isinstance(record.get(f"{split}_{name}"), (int, float))]
            if points:
                epochs, values = zip(*points)
                ax.plot(epochs, values, style, marker="o" if len(points) < 20 else None, markersize=3,
                        label=split)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("per image" if name != "mean_log_scale" else "mean over codes")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def draw_scatter(points: torch.Tensor, classes: list[int], legend: list[str], path: Path) -> Path:
    """2-D codes as points coloured by class (index into `legend`), with axes through 0."""
    points = points.detach().cpu().double()
    figure = _new_figure((7.5, 6))
    figure.subplots_adjust(left=0.1, right=0.75, bottom=0.1, top=0.92)
    ax = figure.subplots()
    classes = torch.tensor(classes)
    for index, name in enumerate(legend):
        chosen = points[classes == index]
        ax.scatter(chosen[:, 0], chosen[:, 1], s=4, color=f"C{index % 10}", label=name)
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.axvline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlabel("code dimension 1")
    ax.set_ylabel("code dimension 2")
    ax.set_title(f"{len(points)} test images, coloured by label")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), markerscale=3, frameon=False)
    return _save(figure, path)


def _new_figure(size: tuple[float, float]):
    """A figure drawn by Agg (files only: no display, also on a headless server), without
    pyplot and without matplotlib.use, so a notebook that imports vae_cli keeps its backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return files.write_bytes(Path(path), buffer.getvalue())
