"""Measuring a model: the ELBO on a split (used after every epoch), and `vae eval`'s
importance-weighted likelihood, bits/dim and active units."""

import torch


@torch.inference_mode()
def elbo(model, images: torch.Tensor, beta: float = 1.0, batch_size: int = 1000) -> dict:
    """Per-image averages over `images` in nats: loss (recon + beta·KL), recon, KL, and the
    mean posterior log-scale (None for deterministic codes). One noise draw per image."""
    recon_sum = kl_sum = log_scale_sum = 0.0
    for start in range(0, len(images), batch_size):
        recon, kl, log_scale = model.losses(images[start:start + batch_size])
        recon_sum += float(recon.double().sum())
        kl_sum += float(kl.double().sum())
        if log_scale is not None:
            log_scale_sum += float(log_scale.double().mean(1).sum())
    n = len(images)
    return {"loss": (recon_sum + beta * kl_sum) / n, "recon": recon_sum / n, "kl": kl_sum / n,
            "mean_log_scale": log_scale_sum / n if log_scale is not None else None}


@torch.inference_mode()
def squared_error(model, images: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean over images of the summed squared pixel error of the reconstruction from the code
    mean: the one reconstruction measure defined for PCA, autoencoders and VAEs alike."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        reconstruction = model.decode_image(model.encode(x)[0])
        total += float(((reconstruction - x) ** 2).double().flatten(1).sum())
    return total / len(images)
