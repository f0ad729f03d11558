"""two_layer: a VAE with two stochastic layers, the architecture of Burda, Grosse and
Salakhutdinov (2015), "Importance Weighted Autoencoders" (their yburda/iwae code):

  generative  p(h2) = N(0, I)   p(h1 | h2) Gaussian   p(x | h1) the pixel likelihood
  inference   q(h1 | x) Gaussian   q(h2 | h1) Gaussian

each conditional a network with deterministic layers (tanh in the paper) between the layers:
x <-> h1 through `hidden` ([200, 200]), h1 <-> h2 through `middle_hidden` ([100, 100]), with
h1 of `middle_dim` (100) and h2, the code, of `latent_dim` (50). Each Gaussian's scale is the
exponential of a linear output, as in the paper.

The code the rest of the tool sees (encode, decode, sampling, pictures) is h2: encoding takes
the mean of q(h1 | x) and gives q(h2 | h1) there; decoding maps h2 to the mean of p(h1 | h2)
and decodes that. Training and evaluation use the whole model: the bound's weight is
log p(x | h1) + log p(h1 | h2) + log p(h2) − log q(h1 | x) − log q(h2 | h1)."""

from contextlib import nullcontext

import torch

from ..networks import ACTIVATIONS, NETWORKS, mlp
from ..objectives import build_likelihood, log_normal
from .base import Model, ModelContext, Objective, StandardNormal


class TopLayerPrior(StandardNormal):
    """N(0, I) over the code h2. The KL of the two-layer posterior to the two-layer prior has no
    per-dimension closed form: the model estimates it from its samples."""

    def kl_per_dim(self, mean, log_scale):
        return None


class TwoLayerVAE(Model):
    Prior = TopLayerPrior
    loss_name = "-ELBO"
    term_names = ("recon", "kl")

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context)
        self.middle_dim = options.middle_dim
        activation = ACTIVATIONS[options.activation]
        self.likelihood = build_likelihood(options)
        # x -> (mean, log-scale) of h1, and h1 -> the likelihood's parameters
        self.encoder, self.decoder = NETWORKS[options.network].build(
            self.shape, options.hidden, 2 * self.middle_dim, self.middle_dim, activation, 0,
            self.likelihood.outputs_per_pixel)
        self.encoder_top = mlp([self.middle_dim, *options.middle_hidden, 2 * self.latent_dim], activation)
        self.decoder_top = mlp([self.latent_dim, *reversed(options.middle_hidden), 2 * self.middle_dim], activation)

    def encode(self, x, labels=None):
        """q(h2 | h1) at the mean of q(h1 | x): the code's mean and log-scale."""
        return self.encoder_top(self.encoder(x).chunk(2, dim=-1)[0]).chunk(2, dim=-1)

    def decode(self, code, labels=None):
        """The likelihood's parameters at the mean of p(h1 | h2 = code)."""
        return self.decoder(self.decoder_top(code).chunk(2, dim=-1)[0])

    def training_noise(self, n, device):
        return torch.randn(n, self.middle_dim + self.latent_dim, device=device)

    def log_weight_parts(self, x, noise):
        """For standard-normal noise (..., batch, middle_dim + latent_dim), one sample
        h1 ~ q(h1 | x), h2 ~ q(h2 | h1) per noise row: log p(x | h1), and
        log p(h1, h2) − log q(h1, h2 | x), each (..., batch)."""
        noise_h1, noise_h2 = noise.split([self.middle_dim, self.latent_dim], dim=-1)
        mean_h1, log_scale_h1 = self.encoder(x).chunk(2, dim=-1)
        h1 = mean_h1 + torch.exp(log_scale_h1) * noise_h1
        mean_h2, log_scale_h2 = self.encoder_top(h1).chunk(2, dim=-1)
        h2 = mean_h2 + torch.exp(log_scale_h2) * noise_h2
        prior_mean_h1, prior_log_scale_h1 = self.decoder_top(h2).chunk(2, dim=-1)
        output = self.decoder(h1.reshape(-1, self.middle_dim)).unflatten(0, h1.shape[:-1])
        log_likelihood = -self.likelihood.nll(output, x)  # broadcasts over the leading sample dimensions
        log_prior_ratio = (log_normal(h1, prior_mean_h1, prior_log_scale_h1) + self.prior.log_prob(h2)
                           - log_normal(h1, mean_h1, log_scale_h1) - log_normal(h2, mean_h2, log_scale_h2))
        return log_likelihood, log_prior_ratio

    def objective(self, x, noise=None, labels=None) -> Objective:
        """The one-sample ELBO; noise as training_noise's, drawn here unless the caller supplies it."""
        if noise is None:
            noise = self.training_noise(len(x), x.device)
        log_likelihood, log_prior_ratio = self.log_weight_parts(x, noise)
        recon, kl = -log_likelihood, -log_prior_ratio
        return Objective(loss=recon + kl, terms={"recon": recon, "kl": kl})

    def importance_log_weights(self, x, k, chunk, labels=None, timed=nullcontext):
        """As GaussianCodeModel's, over both layers: k samples of (h1, h2) per image."""
        weights, kl_sum = [], torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for start in range(0, k, chunk):
            with timed():
                noise = torch.randn(min(chunk, k - start), len(x), self.middle_dim + self.latent_dim, device=x.device)
                log_likelihood, log_prior_ratio = self.log_weight_parts(x, noise)
                weights.append(log_likelihood + log_prior_ratio)
                kl_sum -= log_prior_ratio.double().sum(0)
        return (torch.cat(weights), kl_sum / k, *self.encode(x))
