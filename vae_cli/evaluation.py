"""Measuring a model: its own objective on a split (used after every epoch), and `vae eval`'s
importance-weighted likelihood, bits/dim and active units. Images may be uint8 (a folder's
or MNIST's test split): each batch becomes float as it is taken."""

import json
import math
from contextlib import nullcontext
from pathlib import Path

import torch
from rich.progress import Progress

from . import builtin, files, runs
from . import data as data_module
from . import threads as threads_module
from .console import console
from .data import as_float


@torch.inference_mode()
def average_objective(model, images: torch.Tensor, batch_size: int = 1000, labels: torch.Tensor | None = None) -> dict:
    """Per-image averages over `images` (with their `labels`, which conditional models read) of
    the loss, the terms and the stats the model reports (nats for likelihood terms), with the
    model's own noise: one draw per image."""
    sums = {}
    for start in range(0, len(images), batch_size):
        objective = model.objective(as_float(images[start:start + batch_size]), labels=_part(labels, start, batch_size))
        for name, values in {"loss": objective.loss, **objective.terms, **objective.stats}.items():
            sums[name] = sums.get(name, 0.0) + float(values.double().sum())
    return {name: total / len(images) for name, total in sums.items()}


def _part(labels: torch.Tensor | None, start: int, size: int) -> torch.Tensor | None:
    return None if labels is None else labels[start:start + size]


@torch.inference_mode()
def codes_and_squared_errors(model, images: torch.Tensor, batch_size: int = 1000,
                             labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the code mean (N, latent_dim) and the summed squared pixel error of the
    reconstruction from it (N,): the one reconstruction measure defined for PCA, autoencoders
    and VAEs alike."""
    codes, errors = [], []
    for start in range(0, len(images), batch_size):
        x, part = as_float(images[start:start + batch_size]), _part(labels, start, batch_size)
        code = model.encode(x, part)[0]
        codes.append(code)
        errors.append(((model.decode_image(code, part) - x) ** 2).double().flatten(1).sum(1))
    return torch.cat(codes), torch.cat(errors)


def squared_errors(model, images: torch.Tensor, batch_size: int = 1000, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per image, the summed squared pixel error of the reconstruction from the code mean."""
    return codes_and_squared_errors(model, images, batch_size, labels)[1]


def squared_error(model, images: torch.Tensor, batch_size: int = 1000, labels: torch.Tensor | None = None) -> float:
    """Mean over images of squared_errors."""
    return float(squared_errors(model, images, batch_size, labels).mean())


ELEMENT_BUDGET = 1 << 23  # decoder outputs per chunk (32 MB of float32): k = 5000 fits a laptop


@torch.inference_mode()
def log_weights(model, x: torch.Tensor, k: int, labels: torch.Tensor | None = None, timed=nullcontext
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(x, z_i) − log q(z_i | x) for k posterior samples z_i per image: (k, batch); the
    average over the samples of log q(z_i | x) − log p(z_i), the KL's estimate: (batch,); and
    the code's posterior mean and log-scale: (batch, latent_dim) each. The model draws the
    samples and weighs them (`importance_log_weights`: its posterior may have several layers),
    in chunks of samples so that chunk × batch × pixels never exceeds ELEMENT_BUDGET, each
    chunk inside `timed()` (a ThreadController's, which picks the thread count from them)."""
    chunk = max(1, ELEMENT_BUDGET // (len(x) * x[0].numel()))
    return model.importance_log_weights(x, k, chunk, labels, timed)


def iwae_nll(log_w: torch.Tensor) -> torch.Tensor:
    """-log (1/k) Σ exp(log_w): the k-sample importance-weighted bound on -log p(x), per image."""
    return -(torch.logsumexp(log_w.double(), dim=0) - math.log(len(log_w)))


ACTIVE_UNIT_VARIANCE = 0.01


@torch.inference_mode()
def evaluate(model, images: torch.Tensor, k: int, batch_size: int, seed: int = 0, on_batch=lambda n: None,
             labels: torch.Tensor | None = None, timed=nullcontext) -> dict:
    """Everything `vae eval` reports for a model that defines a density on `images`, per image
    in nats unless noted, with importance samples drawn from `seed`. Bits/dim adds the
    likelihood's own offset per dimension first (see `bits_offset_per_dim` in objectives)."""
    # The models draw their samples from the global generator: seeding it here makes the same
    # seed give the same numbers whatever ran before in the process.
    torch.manual_seed(seed)
    bits_offset_per_dim = model.likelihood.bits_offset_per_dim
    neg_elbo, nll, kl, means, scales = [], [], [], [], []
    for start in range(0, len(images), batch_size):
        x = as_float(images[start:start + batch_size])
        log_w, kl_estimate, mean, log_scale = log_weights(model, x, k, _part(labels, start, batch_size), timed)
        neg_elbo.append(-log_w.double().mean(0))
        nll.append(iwae_nll(log_w))
        # The KL per dimension where the prior gives it in closed form, else the estimate as one column.
        kl_per_dim = model.prior.kl_per_dim(mean, log_scale)
        kl_in_closed_form = kl_per_dim is not None
        kl.append(kl_per_dim.double() if kl_in_closed_form else kl_estimate[:, None])
        means.append(mean.double())
        scales.append(log_scale.double().exp())
        on_batch(len(x))
    neg_elbo, nll, kl, means = torch.cat(neg_elbo), torch.cat(nll), torch.cat(kl), torch.cat(means)
    dims = images[0].numel()
    variance = means.var(0) if len(means) > 1 else torch.zeros_like(means[0])
    return {
        "seed": seed, "images": len(images), "k": k,
        "neg_elbo": float(neg_elbo.mean()), "recon": float(neg_elbo.mean() - kl.sum(1).mean()),
        "kl": float(kl.sum(1).mean()), "nll": float(nll.mean()),
        "bits_per_dim": float((nll.mean() / dims + bits_offset_per_dim) / math.log(2)),
        "active_units": int((variance > ACTIVE_UNIT_VARIANCE).sum()),
        "mean_posterior_scale": float(torch.cat(scales).mean()),
        "kl_per_dim": [round(v, 4) for v in kl.mean(0).tolist()] if kl_in_closed_form else None,
        "posterior_mean_variance": [round(v, 4) for v in variance.tolist()],
    }


def run_report(model, run_config, images: torch.Tensor, labels: torch.Tensor | None, k: int, batch_size: int,
               seed: int, threads, on_batch=lambda n: None) -> dict:
    """What `vae eval` writes to eval.json about a run's model on `images`: the squared error
    every kind has, and for a kind with a density everything `evaluate` measures with
    importance samples from `seed`, under thread controller `threads` (threads.py)."""
    report = {"kind": run_config.model.kind, "binarize": run_config.data.binarize,
              "likelihood": run_config.model.likelihood,
              "squared_error": squared_error(model, images, labels=labels)}
    if not model.defines_density:
        report["note"] = (f"-ELBO, NLL and bits/dim are undefined for kind={run_config.model.kind}: "
                          f"a deterministic code defines no density over images")
        return report
    report |= evaluate(model, images, k, batch_size, seed, on_batch=on_batch, labels=labels, timed=threads.timed)
    report["threads"] = threads.count
    return report


def evaluate_run(run: Path | None, split: str = "test", k: int = 1000, batch_size: int = 100,
                 checkpoint: str = "best", seed: int = 0, device: str = "auto", threads="auto") -> tuple[dict, Path]:
    """`vae eval`'s work: the run (or builtin:NAME) `run` names, else the latest, measured by
    run_report on its `split` with a progress bar, and the report written as eval.json into its
    output folder (checked writable before the model loads). `device` and `threads` are values
    config.check_device and config.check_threads accept. Returns the report and the file."""
    loaded, target = runs.load_for_output(run, checkpoint, device, writes="eval.json")
    controller = threads_module.for_setting(threads, target)
    images, labels = data_module.load(loaded.config.data, target).stored(split)
    with Progress(*Progress.get_default_columns(), console=console, transient=True) as progress:
        task = progress.add_task(f"{split}: {k} samples per image", total=len(images))

        def advance(n: int) -> None:
            progress.update(task, advance=n, description=f"{split}: {k} samples per image, {controller.count} threads")
        measured = run_report(loaded.model, loaded.config, images, labels, k, batch_size, seed, controller, advance)
    report = {"run": str(run) if builtin.is_builtin(run) else str(loaded.folder), "checkpoint": checkpoint,
              "split": split, **measured}
    return report, files.write_text(loaded.folder / "eval.json", json.dumps(report, indent=2) + "\n")
