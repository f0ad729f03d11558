"""iwae: Burda et al.'s importance-weighted autoencoder."""

import math

import torch

from ..objectives import log_normal
from .base import ModelContext, Objective
from .vae import GaussianCodeModel


class IWAE(GaussianCodeModel):
    """The VAE's networks, trained on the bound log (1/k) Σ_i p(x, z_i) / q(z_i | x) with k
    posterior samples z_i per image, which is tighter than the ELBO for k > 1 and is the ELBO
    (in expectation) for k = 1."""
    term_names = ("recon", "kl", "neg_elbo")

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context)
        self.k = options.k
        self.loss_name = f"-IWAE bound (k={self.k})"

    def training_noise(self, n, device):
        return torch.randn(n, self.k, self.latent_dim, device=device)

    def objective(self, x, noise=None, labels=None) -> Objective:
        """noise: (batch, k, latent_dim) ~ N(0, I), drawn here unless the caller supplies it."""
        mean, log_scale = self.encode(x)
        if noise is None:
            noise = self.training_noise(len(x), x.device)
        mean, log_scale = mean.unsqueeze(1), log_scale.unsqueeze(1)
        z = mean + torch.exp(log_scale) * noise  # (batch, k, latent_dim)
        nll = self.likelihood.nll(self.decode(z.flatten(0, 1)), x.repeat_interleave(self.k, 0)).view(len(x), self.k)
        log_weights = -nll + self.prior.log_prob(z) - log_normal(z, mean, log_scale)
        loss = math.log(self.k) - torch.logsumexp(log_weights, dim=1)
        recon = nll.mean(1)
        kl = self.prior.kl(mean, log_scale, z).mean(1)
        return Objective(loss=loss, terms={"recon": recon, "kl": kl, "neg_elbo": recon + kl},
                         stats={"mean_log_scale": log_scale.mean((1, 2))})
