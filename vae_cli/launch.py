"""`vae train`'s work: from a config (or a run to resume) to a finished run folder.

Everything that can refuse the run does so before its folder exists: the config, the device,
the memory and the settings the trainer cannot honour. Then the folder is made, the resolved
config written, and training.train fills it."""

import contextlib
import shutil
from pathlib import Path

from . import catalog, files
from . import config as config_module
from .config import Config
from .console import console
from .errors import UsageError


def train(config_path: Path | None, overrides: list[str], name: str | None, resume: Path | None) -> Path | None:
    """Train a new run (from `config_path`, or the built-in defaults, with `--set` overrides),
    or continue run folder `resume`; returns the run folder (None if it was already complete)."""
    if resume is not None and (config_path is not None or name is not None):
        raise UsageError("--resume continues a run with its own config and folder: drop --config and --name")
    if resume is None:  # before torch loads: a typo fails at once
        source, origin = catalog.resolve(config_path) if config_path is not None else (None, "the built-in defaults")
        run_config, checkpoint = config_module.load(source, overrides), None
        origin = f"resolved from {origin}"
    from . import runs
    if resume is not None:
        runs.refuse_if_training(resume)
        path = resume / "checkpoints" / "last.pt"
        checkpoint = runs.load_checkpoint(path)
        # Anything but the length of the run, the device and the threads would make the resumed run a different one.
        run_config = config_module.with_overrides(runs.config_of(checkpoint, path).to_dict(), overrides,
                                                  f"--resume {resume}",
                                                  allowed={"train.epochs", "train.device", "train.threads"})
        if finished(resume, checkpoint, run_config.train.epochs):
            return None
        origin = f"resumed from {path}"
    if overrides:
        origin += " with --set " + " --set ".join(overrides)
    return _run(run_config, origin, name, resume, checkpoint)


def _run(run_config: Config, origin: str, name: str | None, resume: Path | None, checkpoint: dict | None) -> Path:
    from . import device as device_module
    from . import distributed, resources, runs, training
    world = distributed.start(run_config.train.device)
    console.quiet = not world.is_main  # under torchrun, rank 0 speaks for all
    try:
        device = device_module.choose(run_config.train.device, world.local_rank if world.distributed else None)
        # A wrong device, a run too large for memory or settings the trainer cannot honour fail
        # before a run folder exists.
        needs = resources.estimate(run_config)
        resources.check_training(run_config, device, needs)
        training.check_setup(run_config, device, world)
        if resume is not None:
            run_dir = resume
            console.print(f"resuming {run_dir} at epoch {checkpoint['epoch'] + 1}, step {checkpoint['step']}")
        else:
            run_dir = Path(world.broadcast(str(runs.new_run_dir(run_config, name)) if world.is_main else None))
            console.print(f"run directory: {run_dir}")
        try:
            if world.is_main:
                files.check_writable(run_dir / "checkpoints")
                if checkpoint is None:
                    resources.check_disk(needs, run_dir, shutil.disk_usage(run_dir).free)
                config_module.save(run_config, run_dir / "config.yaml", origin)
            with runs.training_mark(run_dir) if world.is_main else contextlib.nullcontext():
                training.train(run_config, run_dir, device, resume=checkpoint, world=world)
        except BaseException:
            if world.is_main:
                runs.settle_failed_run(run_dir, new=checkpoint is None)
            raise
        # Every rank reaches destroy_process_group together (rank 0 may still be fitting the
        # mixture). Added against a rank that died with SIGABRT after a good run; that abort has
        # been seen once since, so its cause lies elsewhere, still unfound. Not on the failure
        # path, where a rank that died would leave the others waiting here.
        world.barrier()
        if world.is_main:
            runs.mark_latest(run_dir)
    finally:
        distributed.stop(world)
    console.print(f"done: {run_dir}  (checkpoints, metrics.jsonl, pictures)")
    return run_dir


def finished(run_dir: Path, checkpoint: dict, epochs: int) -> bool:
    """Whether a run to resume has already trained `epochs` epochs (then say so and how to
    extend it); fewer epochs than it has trained is an error."""
    done = checkpoint["epoch"]
    if checkpoint["step"] != 0 or done < epochs:
        return False
    extend = f"vae train --resume {run_dir} --set train.epochs=N with N > {done}"
    if epochs < done:
        raise UsageError(f"--set train.epochs={epochs}: {run_dir} has already trained {done} epochs; "
                         f"to extend it: {extend}")
    console.print(f"{run_dir} is complete ({done} of {done} epochs); to train it further: {extend}", soft_wrap=True)
    return True
