"""Pretrained models that ship inside the package, named `builtin:NAME` wherever a run is asked
for (`vae interpolate full.png half.png --run builtin:moons`, `vae sample`, `vae eval`, `vae plot`),
so that a plain `pip install` can blend moons before anything is trained.

Each one is made by one command from a shipped config and that config's seed:

    python -m vae_cli.builtin moons        (or: make builtin)

It trains the config on the CPU with one thread, so that every machine writes the same weights,
and keeps the best checkpoint's weights, the config, its test-error profile and the Gaussian
mixture `vae sample` draws from by default (samplers.py) in
vae_cli/weights/NAME.pt: a checkpoint like a run's, read with torch.load(weights_only=True).
The config stored there is the shipped config as resolved, which tests/test_builtin.py checks.

This module imports torch only inside the functions that load or train: the CLI asks it
whether `--run` names a built-in model before it decides to load anything.
"""

import sys
import tempfile
from pathlib import Path

from . import catalog
from . import config as config_module
from .config import Config
from .errors import UsageError

PREFIX = "builtin:"
CONFIGS = {"moons": "moons.yaml"}  # each built-in model and the shipped config it is trained from
COMMAND = "python -m vae_cli.builtin"
# Machine settings only: they change how fast the weights are made, never what they are meant to be.
TRAINED_WITH = ["train.device=cpu", "train.threads=1"]
FOLDER = Path(__file__).resolve().parent / "weights"


def is_builtin(run) -> bool:
    """Whether a --run value names a built-in model (`builtin:moons`) rather than a folder."""
    return run is not None and str(run).startswith(PREFIX)


def name_of(run) -> str:
    """The model name in `builtin:NAME`, or a one-line error listing the names there are."""
    name = str(run).removeprefix(PREFIX)
    if name not in CONFIGS:
        raise UsageError(f"--run {run}: no built-in model {name!r}; there is "
                         f"{', '.join(PREFIX + n for n in CONFIGS)}")
    return name


def names() -> list[str]:
    """Every built-in model as --run spells it, e.g. ['builtin:moons']."""
    return [PREFIX + name for name in CONFIGS]


def weights_path(name: str) -> Path:
    return FOLDER / f"{name}.pt"


def shipped_config(name: str) -> Config:
    """The shipped config a built-in model is trained from, resolved as `vae train` resolves it."""
    return config_module.load(catalog.folder() / CONFIGS[name])


def load(name: str, device="cpu"):
    """(config, model in eval mode, checkpoint) of a built-in model, its weights mapped onto `device`."""
    from . import runs
    return runs.load_model_file(weights_path(name), device)


def make(name: str) -> Path:
    """Train built-in model `name` from its shipped config and write its weights file."""
    from . import device as device_module
    from . import runs, training
    shipped = shipped_config(name)
    config = config_module.with_overrides(shipped.to_dict(), TRAINED_WITH, f"{name} for {COMMAND}")
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / name
        (run_dir / "checkpoints").mkdir(parents=True)
        training.train(config, run_dir, device_module.choose(config.train.device))
        best = runs.load_checkpoint(run_dir / "checkpoints" / "best.pt")
        mixture = runs.load_checkpoint(run_dir / "sampler_gmm_best.pt")  # training fits it for small data sets
    payload = {"config": shipped.to_dict(), "model": best["model"], "classes": best["classes"],
               "epoch": best["epoch"], "step": best["step"], "familiarity": best["familiarity"],
               "sampler_gmm": mixture, "made_by": f"{COMMAND} {name}", "trained_with": TRAINED_WITH}
    FOLDER.mkdir(exist_ok=True)
    runs.save_checkpoint(payload, weights_path(name))
    return weights_path(name)


def main(argv: list[str]) -> None:
    wanted = argv or list(CONFIGS)
    for name in wanted:
        if name not in CONFIGS:
            raise SystemExit(f"usage: {COMMAND} [{' '.join(CONFIGS)}]: no built-in model {name!r}")
    for name in wanted:
        print(f"training {PREFIX}{name} from the shipped {CONFIGS[name]} ({', '.join(TRAINED_WITH)})")
        path = make(name)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1:])
