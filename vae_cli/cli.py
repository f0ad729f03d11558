"""The `vae` command. Each command is a thin function: it checks its options, calls the module
that does the work, and prints where the results went."""

import functools
import os
import shutil
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import config as config_module
from . import latent, moons, runs, training
from .console import console, err_console
from .errors import UsageError, VaeError
from .images import save_grid

app = typer.Typer(help="Train, evaluate and sample Variational Autoencoders (and the PCA and "
                       "autoencoder they grow from).", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)

DEBUG = {"on": bool(os.environ.get("VAE_DEBUG"))}
RESUMABLE_KEYS = {"train.epochs", "train.device"}

RunOption = Annotated[Optional[Path], typer.Option("--run", help="Run directory (default: the latest run).")]


def friendly_errors(command):
    """The tool's own errors become one red line and their exit code (2 usage, 1 runtime,
    130 interrupted); `--debug` or VAE_DEBUG=1 shows the traceback instead."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VaeError as error:
            if DEBUG["on"]:
                traceback.print_exc()
            err_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            if DEBUG["on"]:
                traceback.print_exc()
            err_console.print("[red]interrupted[/]")
            raise typer.Exit(130) from None
    return wrapper


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks (or set VAE_DEBUG=1).")] = False):
    DEBUG["on"] = debug or bool(os.environ.get("VAE_DEBUG"))


@app.command()
@friendly_errors
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: the moons config built in).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a key, e.g. --set train.epochs=3 (repeatable).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name under runs/ (default: dataset-kind-time).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run from its last.pt (only train.epochs and train.device may be --set).")] = None,
):
    """Train a model and write checkpoints, metrics and pictures into runs/<name>/."""
    overrides = overrides or []
    if resume is not None:
        if config is not None or name is not None:
            raise UsageError("--resume continues a run with its own config and folder: drop --config and --name")
        checkpoint = runs.load_checkpoint(resume / "checkpoints" / "last.pt")
        raw = checkpoint["config"]
        for text in overrides:
            key, value = config_module.parse_override(text)
            if key not in RESUMABLE_KEYS:
                raise UsageError(f"--set {key} cannot change on --resume (it would change the run); "
                                 f"allowed: {', '.join(sorted(RESUMABLE_KEYS))}")
            section, field = key.split(".")
            raw[section][field] = value
        run_config = config_module.from_dict(raw, f"{resume} with --set {' '.join(overrides)}")
        run_dir = resume
        console.print(f"resuming {run_dir} at epoch {checkpoint['epoch'] + 1}, step {checkpoint['step']}")
    else:
        run_config = config_module.load(config, overrides)
        checkpoint = None
        run_dir = runs.new_run_dir(run_config, name)
        console.print(f"run directory: {run_dir}")
    config_module.save(run_config, run_dir / "config.yaml")
    try:
        training.train(run_config, run_dir, resume=checkpoint)
    finally:
        if (run_dir / "checkpoints" / "last.pt").exists():
            runs.mark_latest(run_dir)
        elif checkpoint is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave no empty run behind
    console.print(f"done: {run_dir}  (checkpoints, metrics.jsonl, pictures)")


@app.command()
@friendly_errors
def sample(
    run: RunOption = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, help="Scale of the codes (1 = the prior).")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="Seed for the codes.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="PNG to write (default: in the run folder).")] = None,
    individual: Annotated[bool, typer.Option(help="Also write each image as its own PNG.")] = False,
):
    """Decode random codes of a trained model into a grid of new images."""
    run_dir = runs.resolve_run(run)
    _, model, _ = runs.load_model(run_dir)
    images = latent.sample_images(model, n, seed, temperature)
    out = out or run_dir / f"sample_n{n}_seed{seed}_t{temperature:g}.png"
    console.print(f"wrote {save_grid(images, out)}")
    if individual:
        folder = out.with_suffix("")
        for index, image in enumerate(images):
            save_grid(image.unsqueeze(0), folder / f"{index:05d}.png", columns=1, padding=0)
        console.print(f"wrote {n} images into {folder}/")


@app.command()
@friendly_errors
def moon(
    phase: Annotated[float, typer.Argument(min=0.0, max=1.0, help="Lit fraction: 0 new, 0.5 half, 1 full.")],
    out: Annotated[Path, typer.Argument(help="PNG to write, e.g. full.png.")],
    size: Annotated[int, typer.Option(min=8, help="Image size in pixels.")] = 28,
):
    """Render one centred moon of a given phase, as in the moons dataset (e.g. full.png, half.png)."""
    save_grid(moons.render_one(phase, size).unsqueeze(0), out, columns=1, padding=0)
    console.print(f"wrote {out}")
