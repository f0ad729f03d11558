"""TensorBoard event files in each run directory, so that `tensorboard --logdir runs` shows every
run side by side: per epoch every number of the metrics record (whatever loss terms the model
reports), the learning rate, the running training loss every few steps, the reconstruction and
sample grids, the resolved config as text, and the config's values as hparams with the best test
loss as their metric, so that TensorBoard's HPARAMS tab puts runs' settings beside their results.

tensorboard is optional (`pip install 'vae-cli[tensorboard]'`); without it the run says so once
and carries on. One axis for everything: the optimizer step, so a resumed run purges whatever was
logged after its checkpoint and continues the same curves without duplicate points."""

from pathlib import Path

import torch
import yaml
from torchvision.utils import make_grid

from .console import warn

FOLDER = "tensorboard"
BEST_TEST_LOSS = "hparams/best_test_loss"


def flat_hparams(config: dict) -> dict:
    """{"model.hidden": "[400]", "train.lr": 0.001, ...}: the config's leaves, as the hparams
    plugin takes them (numbers, strings and booleans; anything else as its text)."""
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


class Board:
    def __init__(self, run_dir: Path, config: dict, first_step: int = 0, enabled: bool = True):
        """`first_step`: the optimizer step training starts from (a resumed run's checkpoint);
        anything logged at a later step by the interrupted run is dropped."""
        self.writer = None
        if not enabled:  # under torchrun only rank 0 writes
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warn("no TensorBoard curves for this run: tensorboard is not installed "
                 "(pip install 'vae-cli[tensorboard]'); metrics.jsonl and curves are written as always")
            return
        self.writer = SummaryWriter(str(run_dir / FOLDER), purge_step=first_step + 1 if first_step else None)
        if not first_step:
            self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```", 0)
            # Written into this run's own event file (SummaryWriter.add_hparams would make a
            # sub-run), once: a resumed run keeps the session it started.
            from torch.utils.tensorboard.summary import hparams
            for summary in hparams(flat_hparams(config), {BEST_TEST_LOSS: None}):
                self.writer.file_writer.add_summary(summary)

    def running(self, loss: float, step: int) -> None:
        if self.writer:
            self.writer.add_scalar("train/running_loss", loss, step)

    def epoch(self, record: dict, step: int, lr: float, pictures: dict[str, tuple[torch.Tensor, int]],
              best_test_loss: float) -> None:
        """Every number of the epoch's metrics record as train/..., test/... and speed/... curves,
        the best test loss so far (the hparams metric), and the epoch's pictures
        ({name: (images, columns)})."""
        if not self.writer:
            return
        self.writer.add_scalar(BEST_TEST_LOSS, best_test_loss, step)
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                split, _, name = key.partition("_")
                self.writer.add_scalar(f"{split}/{name}" if split in ("train", "test") else f"speed/{key}",
                                       value, step)
        self.writer.add_scalar("train/learning_rate", lr, step)
        for name, (images, columns) in pictures.items():
            self.writer.add_image(name, make_grid(images.detach().float().cpu().clamp(0, 1), nrow=columns,
                                                  pad_value=0.5), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()


NO_BOARD = Board(Path(), {}, enabled=False)  # for callers that drive a Trainer without a run's curves
