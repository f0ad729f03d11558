"""`vae interpolate`'s work: two images blended through a model's latent space (both encoded,
a path walked between their codes, each step decoded), written as a strip into the folder of
the model that blended them, or to --out.

Which model blends them is familiarity.choose_model's decision. This module imports torch only
once the options and input files are checked: the CLI imports it at start, and an unknown
--method or a mistyped path is refused before torch loads."""

from dataclasses import dataclass
from pathlib import Path

from . import config as config_module
from . import files, references
from .console import console, warn
from .errors import UsageError
from .interpolations import INTERPOLATIONS


@dataclass
class Blended:
    strip: Path           # input A, the decoded path, input B in one row
    gif: Path | None      # the path back and forth (--gif), else None
    frames: Path | None   # the folder of each decoded step as its own PNG (--individual), else None
    run: str              # the model that blended them: a run folder, or builtin:NAME


def interpolate(a: str, b: str, run: Path | None = None, steps: int = 11, method: str = "slerp",
                out: Path | None = None, gif: bool = False, device: str = "auto", individual: bool = False,
                checkpoint: str = "best", label: str | None = None) -> Blended:
    """Blend image references `a` and `b` (files, or dataset images such as test:7) in `steps`
    decoded steps along the path `method` names, through the run `run` names, else the model
    familiarity.choose_model picks; a conditional run needs the class `label`. Written to
    `out`, by default a new name in that model's output folder. Says what it wrote as it
    writes it, and warns (on stderr) of inputs unlike the model's training images."""
    if method not in INTERPOLATIONS:
        raise UsageError(f"--method {method!r}: use one of {', '.join(INTERPOLATIONS)}")
    references.check_files([a, b])  # before torch loads: a mistyped path fails at once
    if out is not None:
        files.check_writable(out.parent)  # before any work
    config_module.check_device(device, "--device")
    import torch

    from . import device as device_module
    from . import familiarity, latent, runs
    from .images import save_each, save_gif, save_grid
    target = device_module.choose(device)
    if out is None and (run is not None or runs.latest_run() is not None):
        files.check_writable(runs.output_folder(run))  # before any work

    def label_for(loaded):
        if loaded.model.conditional and label is None:
            raise UsageError(f"{loaded.name} is conditional: vae interpolate needs --label NAME, the class to "
                             f"blend within (one of {', '.join(loaded.model.classes)})")
        return None if label is None else runs.label_index(loaded.model, label, loaded.name).to(target)

    choice = familiarity.choose_model(run, [a, b], checkpoint, target, label_for)
    if choice.note:
        console.print(choice.note, highlight=False, soft_wrap=True)
    for message in choice.warnings:
        warn(message)
    run_dir, model = choice.run.folder, choice.run.model
    if out is None:
        files.check_writable(run_dir)  # the folder of the model chosen, if it is not the one named
    image_a, image_b = choice.images
    path = latent.interpolation_strip(model, image_a.to(target), image_b.to(target), steps, method, choice.label).cpu()
    if out is None:
        suffix = "" if label is None else f"_{references.name_part(label)}"
        out = runs.unused_path(run_dir / f"interpolate_{references.name_part(a)}_{references.name_part(b)}_"
                                         f"{method}_{steps}steps{suffix}.png")
    elif out.exists():
        warn(f"{out} exists and is replaced, as --out asked")
    files.check_can_write(out)
    strip = save_grid(torch.cat([image_a[None], path, image_b[None]]), out, columns=steps + 2)
    console.print(f"wrote {strip}")
    blended = Blended(strip, None, None, choice.run.name)
    if gif:
        blended.gif = save_gif(path, out.with_suffix(".gif"))
        console.print(f"wrote {blended.gif}")
    if individual:
        names = [f"t{t:.3f}.png" for t in torch.linspace(0, 1, steps).tolist()]
        blended.frames = save_each(path, out.with_suffix(""), names)
        console.print(f"wrote {steps} frames into {blended.frames}/ (t0.000.png decodes A's code, t1.000.png B's)")
    return blended
