"""vae: the variational autoencoder, and its conditional variant (model.conditional: true)."""

from contextlib import nullcontext

import torch
from torch import nn

from ..objectives import log_normal
from .autoencoder import Autoencoder
from .base import ModelContext, Objective, StandardNormal


class GaussianCodeModel(Autoencoder):
    """The encoder gives a mean m and a log-scale s per latent dimension, the posterior
    N(m, exp(s)²); the prior is N(0, I) unless a kind says otherwise. The base of the VAE and
    the kinds that change its bound or its prior."""
    Prior = StandardNormal

    def __init__(self, options, context: ModelContext, n_labels: int = 0):
        super().__init__(options, context, n_code_outputs=2 * options.latent_dim, n_labels=n_labels)

    def training_noise(self, n, device):
        return torch.randn(n, self.latent_dim, device=device)

    def encode(self, x, labels=None):
        mean, log_scale = self.encoder(x).chunk(2, dim=1)
        return mean, log_scale

    def log_likelihood(self, x, codes, labels=None):
        """log p(x | z) for codes (..., batch, latent_dim) of the batch x: (..., batch). The
        likelihood broadcasts the decoder's output against x instead of against copies of x."""
        samples = codes[..., 0, 0].numel()
        output = self.decode(codes.reshape(-1, self.latent_dim), None if labels is None else labels.repeat(samples))
        return -self.likelihood.nll(output.unflatten(0, codes.shape[:-1]), x)

    def importance_log_weights(self, x, k, chunk, labels=None, timed=nullcontext):
        """For evaluation.log_weights: log p(x, z_i) − log q(z_i | x) for k samples z_i of the
        posterior per image, drawn `chunk` at a time, each chunk inside `timed()`: (k, batch);
        the mean over them of log q(z_i | x) − log p(z_i): (batch,); and the posterior's mean
        and log-scale. The decoder runs once per sample on (chunk × batch) codes, which is
        nearly all the time."""
        mean, log_scale = self.encode(x, labels)
        scale = torch.exp(log_scale)
        weights, kl_sum = [], torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for start in range(0, k, chunk):
            with timed():
                noise = torch.randn(min(chunk, k - start), *mean.shape, device=x.device)
                z = mean + scale * noise
                log_prior_ratio = self.prior.log_prob(z) - log_normal(z, mean, log_scale)
                weights.append(self.log_likelihood(x, z, labels) + log_prior_ratio)
                kl_sum -= log_prior_ratio.double().sum(0)
        return torch.cat(weights), kl_sum / k, mean, log_scale


class VAE(GaussianCodeModel):
    """Training decodes the noisy code c = m + exp(s)·e, e ~ N(0, I), and pays the KL of
    N(m, exp(s)²) to the prior, weighted by beta (1 gives the ELBO).

    Two training-only changes to the KL term: warm-up scales it from 0 up to beta over the
    first epochs (after `kl_warmup_delay` epochs at 0), and free bits stop pushing a latent
    dimension's batch-average KL below a floor. Evaluation (eval mode) always measures recon + beta·KL."""

    def __init__(self, options, context: ModelContext, n_labels: int = 0):
        super().__init__(options, context, n_labels=n_labels)
        self.beta = options.beta
        self.kl_warmup_delay, self.kl_warmup_epochs = options.kl_warmup_delay, options.kl_warmup_epochs
        self.free_bits = options.free_bits
        self.at_epoch(0.0)
        # Any other loss is no bound on anything: the real -ELBO is reported beside it.
        loss_is_elbo = self.beta == 1 and not options.objective_changes_over_training and self.free_bits == 0
        self.loss_name = "-ELBO" if loss_is_elbo else f"loss (beta={self.beta:g})"
        self.term_names = ("recon", "kl") if loss_is_elbo else ("recon", "kl", "neg_elbo")

    def at_epoch(self, epochs_done):
        ramp = epochs_done - self.kl_warmup_delay
        if self.kl_warmup_epochs:
            self.kl_weight = self.beta * min(1.0, max(0.0, ramp / self.kl_warmup_epochs))
        else:
            self.kl_weight = self.beta if ramp >= 0 else 0.0

    def objective(self, x, noise=None, labels=None) -> Objective:
        """noise ~ N(0, I) for the code, drawn here unless the caller supplies it."""
        mean, log_scale = self.encode(x, labels)
        if noise is None:
            noise = torch.randn_like(mean)
        code = mean + torch.exp(log_scale) * noise
        recon = self.likelihood.nll(self.decode(code, labels), x)
        kl_per_dim = self.prior.kl_per_dim(mean, log_scale)
        kl = kl_per_dim.sum(1) if kl_per_dim is not None else self.prior.kl(mean, log_scale, code)
        terms = {"recon": recon, "kl": kl}
        if "neg_elbo" in self.term_names:
            terms["neg_elbo"] = recon + kl
        if not self.training:
            loss = recon + self.beta * kl
        else:
            loss = recon + self.kl_weight * (free_bits_kl(kl_per_dim, self.free_bits) if self.free_bits else kl)
        return Objective(loss=loss, terms=terms, stats={"mean_log_scale": log_scale.mean(1)})


def free_bits_kl(kl_per_dim: torch.Tensor, floor: float) -> torch.Tensor:
    """Per image, the KL with each dimension's batch average held at least at `floor` nats:
    its batch sum is batch · Σ_j max(mean_b KL_bj, floor), and a dimension below the floor
    gets no gradient (the raw and the batch-mean parts cancel)."""
    batch_mean = kl_per_dim.mean(0)
    return (kl_per_dim + (batch_mean.clamp_min(floor) - batch_mean)).sum(1)


class ConditionalVAE(VAE):
    """A VAE whose encoder and decoder also read each image's class as a one-hot vector (Sohn et
    al. 2015): the label says which class, so the code is left to hold the rest (the style), and
    decoding one code with different labels draws the classes in one style."""
    conditional = True

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context, n_labels=len(context.classes))
        self.classes = list(context.classes)

    def sample_labels(self, n):
        return torch.arange(n, device=self.device) % len(self.classes)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        if labels is None:
            raise ValueError("a conditional model encodes and decodes given the labels")
        return nn.functional.one_hot(labels.long(), len(self.classes)).float()

    def encode(self, x, labels=None):
        return super().encode(self.network.join_label(x, self.one_hot(labels).to(x.dtype)))

    def decode(self, code, labels=None):
        return super().decode(torch.cat([code, self.one_hot(labels).to(code.dtype)], 1))
