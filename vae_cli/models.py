"""The models: PCA, the autoencoder and the VAE, on MLP or convolutional networks.

All three share one interface so training, sampling and pictures treat them alike:
  encode(x) -> (mean, log_scale)    the code; log_scale is None for deterministic codes
  decode(code) -> output            likelihood parameters (logits or pixel means)
  decode_image(code) -> images      pixels in [0, 1], for pictures
  losses(x, noise) -> (recon, kl, log_scale)  per-image nats, for training and evaluation
  codes_from_normal(noise) -> codes standard-normal noise mapped to decodable codes
  sample_codes(n, ...) -> codes     random codes to decode into new images
"""

import math

import torch
from torch import nn

from .config import Config
from .objectives import build_likelihood, kl_to_standard_normal


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def mlp_networks(shape: tuple[int, int, int], hidden: list[int], n_code_outputs: int, latent_dim: int):
    pixels = math.prod(shape)
    encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *hidden, n_code_outputs]))
    decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), pixels]), nn.Unflatten(1, shape))
    return encoder, decoder


def conv_networks(shape: tuple[int, int, int], channels: list[int], n_code_outputs: int, latent_dim: int):
    """Stride-2 4x4 convolutions halve the image per layer; the decoder mirrors them with
    transposed convolutions."""
    image_channels, size, _ = shape
    final_size = size // 2 ** len(channels)
    widths = [image_channels, *channels]
    down = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        down += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), nn.ReLU()]
    encoder = nn.Sequential(*down, nn.Flatten(),
                            nn.Linear(channels[-1] * final_size ** 2, n_code_outputs))
    up = []
    for n_in, n_out in zip(widths[:0:-1], widths[-2::-1]):
        up += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), nn.ReLU()]
    decoder = nn.Sequential(nn.Linear(latent_dim, channels[-1] * final_size ** 2), nn.ReLU(),
                            nn.Unflatten(1, (channels[-1], final_size, final_size)), *up[:-1])
    return encoder, decoder


NETWORKS = {"mlp": mlp_networks, "conv": conv_networks}


class CodeSpread(nn.Module):
    """Mean and spread of the training codes, for models without a prior: sampling draws
    standard-normal codes scaled to them (which is what shows such models are no generators)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))

    @torch.inference_mode()
    def prepare_sampling(self, batches) -> None:
        """Measure the mean and spread of the codes of the training images, given as an
        iterable of batches (call after training changes the codes)."""
        codes = torch.cat([self.encode(batch)[0] for batch in batches])
        self.code_mean.copy_(codes.mean(0))
        self.code_std.copy_(codes.std(0))

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        """Map standard-normal noise to codes of the kind the model decodes."""
        return self.code_mean + self.code_std * noise

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator).to(self.code_mean.device)
        return self.codes_from_normal(temperature * noise)


class Autoencoder(CodeSpread):
    """A deterministic code: encoder and decoder networks, reconstruction loss only."""

    def __init__(self, config: Config, n_code_outputs: int | None = None):
        super().__init__(config.model.latent_dim)
        self.shape = (config.data.channels, config.data.image_size, config.data.image_size)
        self.encoder, self.decoder = NETWORKS[config.model.network](
            self.shape, config.model.hidden, n_code_outputs or self.latent_dim, self.latent_dim)
        self.likelihood = build_likelihood(config.model)

    def encode(self, x):
        return self.encoder(x), None

    def decode(self, code):
        return self.decoder(code)

    def decode_image(self, code):
        return self.likelihood.mean(self.decode(code))

    def losses(self, x, noise=None):
        code, _ = self.encode(x)
        recon = self.likelihood.nll(self.decode(code), x)
        return recon, torch.zeros_like(recon), None

    def forward(self, x, noise=None):
        """The training loss terms; `forward` so that DistributedDataParallel and torch.compile,
        which wrap a module's forward, see the whole computation."""
        return self.losses(x, noise)


class VAE(Autoencoder):
    """The encoder gives a mean m and a log-scale s per latent dimension; training decodes the
    noisy code c = m + exp(s)·e, e ~ N(0, I), and pays the KL of N(m, exp(s)²) to the prior."""

    def __init__(self, config: Config):
        super().__init__(config, n_code_outputs=2 * config.model.latent_dim)

    def encode(self, x):
        mean, log_scale = self.encoder(x).chunk(2, dim=1)
        return mean, log_scale

    def losses(self, x, noise=None):
        """noise ~ N(0, I) for the code, drawn here unless the caller supplies it."""
        mean, log_scale = self.encode(x)
        if noise is None:
            noise = torch.randn_like(mean)
        code = mean + torch.exp(log_scale) * noise
        recon = self.likelihood.nll(self.decode(code), x)
        kl = kl_to_standard_normal(mean, log_scale).sum(1)
        return recon, kl, log_scale

    def prepare_sampling(self, batches):
        """Nothing to measure: a VAE samples from its prior N(0, I)."""

    def codes_from_normal(self, noise):
        return noise  # the prior is N(0, I) itself


class PCA(CodeSpread):
    """The linear encoder/decoder (W, Wᵀ): the top principal directions, fitted once by SVD."""

    def __init__(self, config: Config):
        super().__init__(config.model.latent_dim)
        self.shape = (config.data.channels, config.data.image_size, config.data.image_size)
        pixels = math.prod(self.shape)
        self.register_buffer("pixel_mean", torch.zeros(pixels))
        self.register_buffer("components", torch.zeros(pixels, self.latent_dim))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        flat = images.flatten(1).double()
        mean = flat.mean(0)
        # The right singular vectors of the centred data are the principal directions.
        _, _, directions = torch.linalg.svd(flat - mean, full_matrices=False)
        self.pixel_mean.copy_(mean.float())
        self.components.copy_(directions[:self.latent_dim].T.float())
        self.prepare_sampling(images.split(1000))

    def encode(self, x):
        return (x.flatten(1) - self.pixel_mean) @ self.components, None

    def decode(self, code):
        return (code @ self.components.T + self.pixel_mean).unflatten(1, self.shape)

    def decode_image(self, code):
        return self.decode(code).clamp(0, 1)


MODELS = {"vae": VAE, "ae": Autoencoder, "pca": PCA}


def build(config: Config) -> nn.Module:
    return MODELS[config.model.kind](config)
