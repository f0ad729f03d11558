"""ae: a deterministic code, the article's deep autoencoder: encoder and decoder networks,
reconstruction loss only. It has no prior, so it samples from the measured spread of its
training codes (which shows it is no generator)."""

from ..networks import ACTIVATIONS, NETWORKS
from ..objectives import build_likelihood
from .base import Model, ModelContext, Objective


class Autoencoder(Model):
    term_names = ("recon",)

    def __init__(self, options, context: ModelContext, n_code_outputs: int | None = None, n_labels: int = 0):
        super().__init__(options, context)
        self.network = NETWORKS[options.network]
        self.likelihood = build_likelihood(options)
        self.encoder, self.decoder = self.network.build(
            self.shape, options.hidden, n_code_outputs or self.latent_dim, self.latent_dim,
            ACTIVATIONS[options.activation], n_labels, self.likelihood.outputs_per_pixel)

    def encode(self, x, labels=None):
        return self.encoder(x), None

    def decode(self, code, labels=None):
        return self.decoder(code)

    def objective(self, x, noise=None, labels=None) -> Objective:
        recon = self.likelihood.nll(self.decode(self.encode(x, labels)[0], labels), x)
        return Objective(loss=recon, terms={"recon": recon})
