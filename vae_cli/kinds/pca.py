"""pca: the linear encoder/decoder (W, Wᵀ) the article starts from."""

import math

import torch

from .base import Model, ModelContext, Objective


class PCA(Model):
    """The top principal directions, fitted once by SVD."""
    term_names = ("squared_error",)

    def __init__(self, options, context: ModelContext):
        super().__init__(options, context)
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

    def encode(self, x, labels=None):
        return (x.flatten(1) - self.pixel_mean) @ self.components, None

    def decode(self, code, labels=None):
        return (code @ self.components.T + self.pixel_mean).unflatten(1, self.shape)

    def decode_image(self, code, labels=None):
        return self.decode(code).clamp(0, 1)

    def objective(self, x, noise=None, labels=None) -> Objective:
        error = ((self.reconstruct(x) - x) ** 2).flatten(1).sum(1)
        return Objective(loss=error, terms={"squared_error": error})
