"""Driving a Trainer step by step in tests: a tiny run, a stop after N steps, whole epochs."""
import math

import torch
from rich.progress import Progress

from vae_cli import config, training

TINY = ["data.train_size=96", "data.test_size=32", "model.network=mlp", "model.hidden=[16]", "train.batch_size=16"]


def read_by(target, settings) -> list[str]:
    """The `section.key=value` settings that config `target`'s dataset and model kind read."""
    return [s for s in settings if getattr(target, s.split(".")[0]).applies(s.split("=")[0].split(".")[1])]


def tiny_config(*overrides):
    """A CPU config of the overrides, with the tiny settings its dataset and model kind read."""
    return config.load(None, [*read_by(config.load(None, list(overrides)), TINY), "train.device=cpu", *overrides])


def trainer_for(tmp_path, *overrides, name="run"):
    cfg = tiny_config(*overrides)
    run_dir = tmp_path / name
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    return training.Trainer(*training.build(cfg, torch.device("cpu")), cfg, run_dir, torch.device("cpu"))


class StopAfter:
    """A stand-in for StopRequests that asks to stop once `steps` steps have been trained."""

    def __init__(self, trainer, steps):
        self.trainer, self.steps = trainer, steps

    @property
    def signal_name(self):
        done = self.trainer.epoch * self.trainer.steps_per_epoch + self.trainer.step
        return "SIGINT" if done >= self.steps else None


def train_epochs(trainer, stop=None):
    with Progress(disable=True) as progress:
        while trainer.epoch < trainer.config.train.epochs:
            trainer.run_epoch(progress, stop or StopAfter(trainer, math.inf))
            trainer.end_epoch(0.0, 0.0)
