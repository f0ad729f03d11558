"""vamp: a VAE with the VampPrior (Tomczak and Welling 2018, "VAE with a VampPrior"). The prior
is the equal mixture of the posteriors of K learned pseudo-inputs, p(z) = (1/K) Σ_k q(z | u_k):
the prior the ELBO would choose (the average posterior), approximated with K images the
model learns, so it follows where the codes are instead of pulling them to N(0, I)."""

import math

import torch
from torch import nn

from ..data import as_float
from ..objectives import log_normal
from .base import ModelContext, Prior
from .vae import VAE

# Pseudo-inputs start as random training images where the model is built for training, else
# (to load weights into) as pale grey images, the paper's default (mean 0.05, deviation 0.01);
# they are clipped to pixel values [0, 1] (its hardtanh) wherever they are used.
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01
ELEMENT_BUDGET = 1 << 22  # codes × components × latent_dim per chunk of log_prob's distances


class VampPrior(Prior):
    """The mixture of the posteriors q(z | u_k) of K pseudo-inputs u_k, learned with the model.
    `encode` is the model's encoder (a method, not a submodule: its weights are the model's)."""

    def __init__(self, shape: tuple[int, int, int], pseudo_inputs: int, encode):
        super().__init__()
        self.pseudo_inputs = nn.Parameter(PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * torch.randn(pseudo_inputs, *shape))
        self.encode = encode

    def components(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-scale of each component: (K, latent_dim) each."""
        return self.encode(self.pseudo_inputs.clamp(0, 1))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log (1/K) Σ_k N(z; m_k, exp(s_k)²) for codes (..., latent_dim): (...)."""
        mean, log_scale = self.components()
        flat = codes.reshape(-1, codes.shape[-1])
        # The distances are taken directly, in chunks of codes: expanding (z − m)² into
        # z² − 2zm + m² would cancel in float32 once a component is narrow, an error of many
        # nats in p(z) that training learns to exploit (a KL of −237 nats in a trial).
        rows = max(1, ELEMENT_BUDGET // mean.numel())
        log_density = torch.cat([log_normal(part[:, None], mean, log_scale) for part in flat.split(rows)])
        return (torch.logsumexp(log_density, dim=1) - math.log(len(mean))).reshape(codes.shape[:-1])

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        """Noise mapped through the mixture's mean and spread per dimension: the Gaussian of
        the mixture's first two moments, for grids and traversals, which need one map from
        quantiles to codes. Random codes are drawn from the mixture itself (`sample`)."""
        mean, log_scale = self.components()
        centre = mean.mean(0)
        spread = ((torch.exp(2 * log_scale) + mean ** 2).mean(0) - centre ** 2).clamp_min(0).sqrt()
        return centre + spread * noise

    def sample(self, n: int, generator: torch.Generator | None, temperature: float) -> torch.Tensor:
        """n codes: a component chosen uniformly, then its posterior's noise scaled by
        `temperature`; both drawn from `generator`, so a seed gives the same codes."""
        mean, log_scale = self.components()
        component = torch.randint(len(mean), (n,), generator=generator)
        noise = torch.randn(n, mean.shape[1], generator=generator)
        component, noise = component.to(mean.device), noise.to(mean.device)
        return mean[component] + temperature * torch.exp(log_scale[component]) * noise


class VampVAE(VAE):
    """The VAE's networks, bound and options, with the VampPrior. The KL to a mixture has no
    closed form: training and evaluation estimate it from the posterior sample (Prior.kl)."""

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context)
        self.prior = VampPrior(self.shape, options.pseudo_inputs, self.encode)
        if context.train_images is not None:
            # The paper's option to start from random training images: from pale grey ones the
            # mixture sits far from every real posterior, and the KL's pull made the encoder
            # ignore its input within the first epoch (KL 0.9 nats, -ELBO 209, in a trial).
            rows = torch.randint(len(context.train_images), (options.pseudo_inputs,))
            with torch.no_grad():
                self.prior.pseudo_inputs.copy_(as_float(context.train_images[rows]))

    def sample_codes(self, n, generator=None, temperature=1.0):
        return self.prior.sample(n, generator, temperature)
