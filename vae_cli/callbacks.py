"""The work the Trainer hands off at set points, one job each: an epoch's pictures, TensorBoard,
its line in metrics.jsonl, curves.png and the checkpoints. The Trainer calls

  after_progress(trainer, running_loss)  every few steps, with the epoch's running training loss
  after_epoch(trainer, epoch)            once an epoch is measured (an EpochEnd)
  on_stop(trainer)                       when Ctrl-C or SIGTERM stops the run early

in the order of its list (on_stop in reverse: the checkpoint, written last at an epoch's end,
is the first thing saved on a stop, before slower work such as drawing). Under torchrun only
rank 0 writes files: a callback runs on every rank only where `every_rank` says so (saving a
checkpoint gathers from every rank)."""

from functools import cached_property
from pathlib import Path

import torch

from . import charts, runs
from .board import Board
from .data import as_float
from .images import grid_columns, save_grid

PICTURE_COUNT = 64
RECONSTRUCTION_COUNT = 16


@torch.inference_mode()
def epoch_pictures(model, test: torch.Tensor, test_labels: torch.Tensor, seed: int) -> dict:
    """{name: (images, columns)}: test inputs (uint8 or float) above their reconstructions, and decoded random
    codes (the same codes every epoch, so that epochs can be compared; a conditional model's in
    one column per class)."""
    model.eval()
    inputs, labels = as_float(test[:RECONSTRUCTION_COUNT]), test_labels[:RECONSTRUCTION_COUNT]
    pictures = {"reconstructions": (torch.cat([inputs, model.reconstruct(inputs, labels)]), len(inputs))}
    codes = model.sample_codes(PICTURE_COUNT, generator=torch.Generator().manual_seed(seed))
    columns = len(model.classes) if model.conditional else grid_columns(PICTURE_COUNT)
    pictures["samples"] = (model.decode_image(codes, model.sample_labels(PICTURE_COUNT)), columns)
    return pictures


def save_pictures(pictures: dict, run_dir: Path, epoch: int) -> None:
    """reconstructions_XXX.png and samples_XXX.png."""
    for name, (images, columns) in pictures.items():
        save_grid(images, run_dir / f"{name}_{epoch:03d}.png", columns=columns)


class EpochEnd:
    """What the callbacks get of an epoch: its metrics record, and its pictures, drawn once for
    whichever callbacks ask."""

    def __init__(self, trainer, record: dict):
        self.trainer, self.record = trainer, record

    @cached_property
    def pictures(self) -> dict:
        trainer = self.trainer
        return epoch_pictures(trainer.model, trainer.data.test, trainer.data.test_labels, trainer.config.train.seed)


class Callback:
    every_rank = False

    def after_progress(self, trainer, running_loss: float) -> None:
        pass

    def after_epoch(self, trainer, epoch: EpochEnd) -> None:
        pass

    def on_stop(self, trainer) -> None:
        pass


class Pictures(Callback):
    def after_epoch(self, trainer, epoch):
        save_pictures(epoch.pictures, trainer.run_dir, trainer.epoch)


class TensorBoard(Callback):
    def __init__(self, board: Board):
        self.board = board

    def after_progress(self, trainer, running_loss):
        self.board.running(running_loss, trainer.global_step)

    def after_epoch(self, trainer, epoch):
        self.board.epoch(epoch.record, trainer.global_step, trainer.optimizer.param_groups[0]["lr"], epoch.pictures,
                         trainer.best_loss)


class Metrics(Callback):
    def after_epoch(self, trainer, epoch):
        runs.append_metrics(trainer.run_dir, epoch.record)


class Curves(Callback):
    """curves.png, redrawn after an epoch unless drawing would take too much of the time, always
    after the last epoch and when the run stops."""

    def __init__(self, run_dir: Path):
        self.picture = charts.CurvesPicture(run_dir / "curves.png", run_dir.name)

    def after_epoch(self, trainer, epoch):
        self.picture.after_epoch(lambda: runs.read_metrics(trainer.run_dir), trainer.epoch == trainer.config.train.epochs)

    def on_stop(self, trainer):
        self.picture.catch_up(lambda: runs.read_metrics(trainer.run_dir))


class Checkpoints(Callback):
    """last.pt after every epoch and on a stop mid-epoch; best.pt when the test loss is the lowest yet."""
    every_rank = True

    def after_epoch(self, trainer, epoch):
        if epoch.record["best"]:
            trainer.save("best")
        trainer.save("last")

    def on_stop(self, trainer):
        if trainer.step:  # mid-epoch: an epoch's end is saved already
            trainer.save("last")


def standard(run_dir: Path, board: Board | None = None) -> list[Callback]:
    """What `vae train` writes into a run folder (TensorBoard where a board is given)."""
    return [Pictures(), *([TensorBoard(board)] if board else []), Metrics(), Curves(run_dir), Checkpoints()]
