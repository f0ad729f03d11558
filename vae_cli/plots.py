"""`vae plot`: pictures of a trained model's latent space, written into its run folder."""

from pathlib import Path

import torch

from . import charts
from . import data as data_module
from . import latent, runs
from .images import save_grid, save_labeled_rows

SCATTER_POINTS = 5000
TRAVERSED_DIMS = 10
PHASE_BINS = 5
LABEL_ROW_LENGTH = 10  # samples per class in latent_labels.png


def label_classes(labels: torch.Tensor) -> tuple[list[int], list[str]]:
    """Class index per point and legend names: integer labels as they are, continuous labels
    (the moons' phases) in equal bins."""
    if labels.dtype.is_floating_point:
        bins = (labels * PHASE_BINS).long().clamp(0, PHASE_BINS - 1)
        names = [f"phase {i / PHASE_BINS:.1f}-{(i + 1) / PHASE_BINS:.1f}" for i in range(PHASE_BINS)]
        return bins.tolist(), names
    classes = sorted(set(labels.tolist()))
    return [classes.index(v) for v in labels.tolist()], [str(c) for c in classes]


def plot_run(run: Path | None, image_index: int = 0, device: str = "auto", checkpoint: str = "best") -> list[Path]:
    """The pictures of the latent space of the run (or builtin:NAME) `run` names, else the
    latest, written into its output folder (checked writable before the model loads); `device`
    is a --device value (config.check_device accepts it). Returns the files written."""
    loaded, target = runs.load_for_output(run, checkpoint, device, writes=".")
    return _draw(loaded.folder, loaded.config, loaded.model, image_index, target)


@torch.inference_mode()
def _draw(run_dir: Path, run_config, model, image_index: int, device) -> list[Path]:
    data = data_module.load(run_config.data, device)
    start = data_module.as_float(data_module.image_at(data.test, image_index, "test", f"--image {image_index}"))  # before writing anything
    test, labels = data_module.as_float(data.test[:SCATTER_POINTS]), data.test_labels[:SCATTER_POINTS]
    written = []
    if model.conditional:
        rows = latent.per_label(model, LABEL_ROW_LENGTH, seed=0)
        written.append(save_labeled_rows(list(zip(model.classes, rows)), run_dir / "latent_labels.png"))
    if run_config.model.latent_dim == 2:
        if not model.conditional:  # a conditional manifold would need one picture per label
            written.append(save_grid(latent.manifold(model), run_dir / "latent_manifold.png", columns=20))
        colors, legend = label_classes(labels)
        written.append(charts.draw_scatter(model.encode(test, labels)[0], colors, legend, run_dir / "latent_scatter.png"))
    variance = latent.code_variance(model, test, labels)
    dims = variance.argsort(descending=True)[:TRAVERSED_DIMS].tolist()
    rows = latent.traversals(model, start, dims, label=data.test_labels[image_index] if model.conditional else None)
    written.append(save_labeled_rows(
        [(f"dim {d}\nvar {variance[d]:.2f}", row) for d, row in zip(dims, rows)],
        run_dir / "latent_traversals.png"))
    return written
