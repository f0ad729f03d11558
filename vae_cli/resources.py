"""What a training run will need, checked before anything is allocated: memory for the data,
the model with its gradients and Adam's moments, and one batch's activations. A run that
cannot fit is refused with the estimate; a large one gets a warning; so do settings that
cannot help (fp16 autocast on a CPU, more threads than cores)."""

import dataclasses
import os
from pathlib import Path

import torch

from . import data as data_module
from . import models
from .config import Config
from .datasets import DATASETS
from .console import warn
from .errors import VaeError

BYTES_PER_VALUE = 4  # float32
LARGE_SHARE = 0.5  # warn when a run needs more than this share of the available memory


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"


def estimate(config: Config, n_train: int | None = None, n_test: int | None = None) -> dict:
    """Bytes needed for training, by part. The model is built on the meta device (no memory)
    and run on one meta batch, whose module outputs stand for the activations backward keeps."""
    data, train = config.data, config.train
    dataset = DATASETS[data.name]
    if data.name == "folder" and n_train is None:  # a folder has as many images as files
        images = len(data_module.image_files(Path(data.path)))
        n_test = max(1, round(data.test_fraction * images))
        n_train = max(1, images - n_test)
    n_train, n_test = dataset.sizes or (n_train or data.train_size, n_test or data.test_size)
    pixels = data.channels * data.image_size ** 2
    # A conditional model's label inputs add a few numbers per image; its classes are only known
    # once the data is read, so the estimate is the unconditional model's.
    unconditional = dataclasses.replace(config, model=dataclasses.replace(config.model, conditional=False))
    with torch.device("meta"):
        model = models.build(unconditional).eval()  # eval: the estimate is no training step
    parameters = sum(p.numel() for p in model.parameters())
    batch = min(train.batch_size, n_train)
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, out: outputs.append(out)) for m in model.modules()]
    try:
        with torch.device("meta"):
            model(torch.zeros(batch, data.channels, data.image_size, data.image_size),
                  model.training_noise(batch, "meta"))
    except (RuntimeError, NotImplementedError, TypeError):
        outputs = [torch.empty(batch, pixels, device="meta")] * 4  # a rough stand-in
    finally:
        for hook in hooks:
            hook.remove()
    activations = sum(out.numel() for out in outputs if isinstance(out, torch.Tensor))
    return {
        "data": (n_train + n_test) * pixels * dataset.bytes_per_value,  # both splits, as stored
        # weights, gradients and Adam's two moments
        "model": 4 * parameters * BYTES_PER_VALUE,
        # each output kept for backward, and its gradient
        "activations": 2 * activations * BYTES_PER_VALUE,
        "checkpoint": 3 * parameters * BYTES_PER_VALUE,  # weights and Adam's moments
    }


def available_memory(device: torch.device) -> int | None:
    """Bytes free on `device` now, or None where that cannot be known."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_training(config: Config, device: torch.device, parts: dict) -> None:
    """Refuse a run whose estimate (`parts`, from estimate) exceeds the free memory; warn when
    it is large, and for settings that cannot help."""
    data = 0 if DATASETS[config.data.name].mapped and device.type == "cpu" else parts["data"]
    needed = data + parts["model"] + parts["activations"]
    free = available_memory(device)
    breakdown = (f"{gigabytes(needed)} (data {gigabytes(data)}, model with Adam "
                 f"{gigabytes(parts['model'])}, activations of a batch {gigabytes(parts['activations'])})")
    fix = "lower data.image_size, model.hidden, model.latent_dim or train.batch_size"
    if free is not None and needed > free:
        raise VaeError(f"this run needs about {breakdown} but {device.type} has {gigabytes(free)} "
                       f"free: {fix}")
    if free is not None and needed > LARGE_SHARE * free:
        warn(f"this run needs about {breakdown}, most of the {gigabytes(free)} free on {device.type}")
    if config.train.precision == "fp16" and device.type == "cpu":
        warn("train.precision=fp16 on the CPU is emulated and slower than fp32: use bf16 or fp32 there")
    cores = os.cpu_count() or 1
    if config.train.threads != "auto" and config.train.threads > cores:
        warn(f"train.threads={config.train.threads} is more than the {cores} cores here: "
             f"using {cores}, since extra threads only wait on each other; auto picks by measured speed")


def check_disk(parts: dict, folder, free: int) -> None:
    """Refuse a run whose two checkpoints (and the temporary of a third; `parts` from estimate)
    cannot fit in `free`."""
    needed = 3 * parts["checkpoint"]
    if needed > free:
        raise VaeError(f"cannot write {folder}: not enough space: its checkpoints need about "
                       f"{gigabytes(needed)} and the disk has {gigabytes(free)} free: free some space, "
                       f"or set VAE_RUNS to a folder on a larger disk")
