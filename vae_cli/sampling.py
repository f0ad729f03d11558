"""`vae sample`'s work: random codes of a trained model decoded into a grid of new images,
written into the run folder (the current folder for a built-in model) or to --out.

SAMPLERS names where the codes can come from (samplers.py says what each one draws). This
module imports torch only once the options are checked: the CLI imports it at start, and an
unknown --sampler is refused before torch loads."""

from dataclasses import dataclass
from pathlib import Path

from . import config as config_module
from . import files, references
from .console import console
from .errors import UsageError

SAMPLERS = ("auto", "prior", "gmm")  # vae sample --sampler, the explore page's choice


@dataclass
class Sampled:
    grid: Path            # the PNG of every image
    folder: Path | None   # where each image went as its own PNG (--individual), else None
    source: str | None    # where auto took the codes from, in words; None for a sampler named


def sample(run: Path | None, n: int, temperature: float, seed: int, out: Path | None = None,
           individual: bool = False, sampler: str = "auto", label: str | None = None, device: str = "auto",
           checkpoint: str = "best") -> Sampled:
    """n images decoded from codes drawn with `seed` from `sampler` and scaled by `temperature`,
    from the run (or builtin:NAME) `run` names, else the latest; a conditional run decodes them
    with the class `label`, by default every class in turn. Written to `out`, by default a name
    in the output folder that says how they were drawn. Says what it wrote as it writes it."""
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    from . import latent, runs, samplers
    from .images import save_each, save_grid
    suffix = ("" if sampler == "auto" else f"_{sampler}") + ("" if label is None else f"_{references.name_part(label)}")
    out = files.check_can_write(out or runs.output_folder(run) / f"sample_n{n}_seed{seed}_t{temperature:g}{suffix}.png")
    config_module.check_device(device, "--device")
    loaded, target = runs.load_for_output(run, checkpoint, device)
    labels = None if label is None else runs.label_index(loaded.model, label, loaded.folder).repeat(n).to(target)
    mixture = None  # None: the model's own prior
    if sampler == "gmm":
        mixture = samplers.gmm_for_run(loaded.folder, loaded.config, loaded.model, checkpoint, loaded.checkpoint, target)
    elif sampler == "auto":
        mixture = samplers.stored_gmm(loaded.folder, checkpoint, loaded.checkpoint)
    images = latent.sample_images(loaded.model, n, seed, temperature, sampler=mixture, labels=labels)
    source = None
    if sampler == "auto":
        source = "the run's Gaussian mixture" if mixture is not None else "the prior"
        console.print(f"codes from {source} (--sampler prior or gmm to choose)")
    grid = save_grid(images, out)
    console.print(f"wrote {grid}")
    folder = None
    if individual:
        folder = save_each(images, out.with_suffix(""), [f"{index:05d}.png" for index in range(n)])
        console.print(f"wrote {n} images into {folder}/")
    return Sampled(grid, folder, source)
