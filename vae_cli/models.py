"""The models: PCA, the autoencoder, the VAE (also conditional on a label) and the IWAE, on MLP
or convolutional networks.

All share one interface so training, sampling and pictures treat them alike:
  encode(x, labels) -> (mean, log_scale)  the code; log_scale is None for deterministic codes
  decode(code, labels) -> output          likelihood parameters (logits, pixel means, or means and log-scales)
  decode_image(code, labels) -> images    pixels in [0, 1], for pictures
  reconstruct(x, labels) -> images        decoded from the code means
  objective(x, noise, labels) -> Objective  the loss to minimise and named terms, per image
  codes_from_normal(noise) -> codes standard-normal noise mapped to codes of the sampling prior
  sample_codes(n, ...) -> codes     random codes to decode into new images
What differs between kinds is a class property (see `Model`); the trainer, evaluation and
`vae compare` read those and the reported terms, never a kind's name or formula. `labels`, the
class index of each image, is read by conditional models only (None for the others).
"""

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import Config, unlabelled_data_error
from .objectives import build_likelihood, kl_to_standard_normal, log_normal


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers with the activation between them (none after the last)."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers[:-1])


def mlp_networks(shape: tuple[int, int, int], hidden: list[int], n_code_outputs: int, latent_dim: int,
                 activation: type[nn.Module], n_labels: int = 0, outputs_per_pixel: int = 1):
    """n_labels: one-hot label entries the encoder reads after the pixels and the decoder after
    the code (see join_as_numbers). The decoder gives outputs_per_pixel numbers per pixel, as
    that many times the image's channels."""
    pixels = math.prod(shape)
    channels, height, width = shape
    encoder = nn.Sequential(nn.Flatten(), mlp([pixels + n_labels, *hidden, n_code_outputs], activation))
    decoder = nn.Sequential(mlp([latent_dim + n_labels, *reversed(hidden), outputs_per_pixel * pixels], activation),
                            nn.Unflatten(1, (outputs_per_pixel * channels, height, width)))
    return encoder, decoder


def conv_networks(shape: tuple[int, int, int], channels: list[int], n_code_outputs: int, latent_dim: int,
                  activation: type[nn.Module], n_labels: int = 0, outputs_per_pixel: int = 1):
    """Stride-2 4x4 convolutions halve the image per layer; the decoder mirrors them with
    transposed convolutions. n_labels: one-hot label planes the encoder reads beside the image's
    channels and entries the decoder reads after the code (see join_as_channels). The decoder
    gives outputs_per_pixel numbers per pixel, as that many times the image's channels."""
    image_channels, size, _ = shape
    final_size = size // 2 ** len(channels)
    widths = [image_channels, *channels]
    down = []
    for n_in, n_out in zip([image_channels + n_labels, *channels[:-1]], widths[1:]):
        down += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), activation()]
    encoder = nn.Sequential(*down, nn.Flatten(),
                            nn.Linear(channels[-1] * final_size ** 2, n_code_outputs))
    up = []
    for n_in, n_out in zip(widths[:0:-1], [*widths[-2:0:-1], outputs_per_pixel * image_channels]):
        up += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), activation()]
    decoder = nn.Sequential(nn.Linear(latent_dim + n_labels, channels[-1] * final_size ** 2), activation(),
                            nn.Unflatten(1, (channels[-1], final_size, final_size)), *up[:-1])
    return encoder, decoder


def join_as_numbers(x: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """The MLP encoder's input with a label: the pixels, flattened, then the one-hot entries."""
    return torch.cat([x.flatten(1), one_hot], 1)


def join_as_channels(x: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """The conv encoder's input with a label: one constant plane per class beside the image."""
    return torch.cat([x, one_hot[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)


@dataclass(frozen=True)
class Network:
    """A family of encoder/decoder networks and how its encoder reads a label."""
    build: Callable
    join_label: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


NETWORKS = {"mlp": Network(mlp_networks, join_as_numbers), "conv": Network(conv_networks, join_as_channels)}


@dataclass
class Objective:
    """What a model reports for a batch: `loss`, the per-image value training minimises, and
    `terms`, named per-image values to show and log (their meaning is the model's business).
    `stats` are diagnostics measured on the test split only."""
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


TERM_LABELS = {"kl": "KL", "neg_elbo": "-ELBO", "squared_error": "squared error"}  # else the name


class CodeSpread(nn.Module):
    """Mean and spread of the training codes, the sampling prior of models without one:
    sampling draws standard-normal codes scaled to them (which is what shows such models are
    no generators)."""
    fitted_to_codes = True

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_std", torch.ones(latent_dim))

    def fit(self, codes: torch.Tensor) -> None:
        self.code_mean.copy_(codes.mean(0))
        self.code_std.copy_(codes.std(0))

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        return self.code_mean + self.code_std * noise

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        return log_normal(codes, self.code_mean, self.code_std.log())


class StandardNormal(nn.Module):
    """The prior N(0, I) of a VAE: nothing to measure."""
    fitted_to_codes = False

    def __init__(self, latent_dim: int):
        super().__init__()

    def fit(self, codes: torch.Tensor) -> None:
        pass

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        return log_normal(codes, torch.zeros_like(codes), torch.zeros_like(codes))


class Model(nn.Module):
    """What differs between kinds, as class properties the rest of the tool reads."""
    defines_density = False  # the ELBO, the NLL and bits/dim make sense
    fitted_once = False      # fitted in one shot (`fit(images)`), no training loop
    conditional = False      # encodes and decodes given a label (the class names are in `classes`)
    classes: list[str] | None = None
    Prior = CodeSpread       # the sampling prior: measured from the training codes, or N(0, I)
    loss_name = "loss"       # what the epoch line calls `Objective.loss`
    term_names: tuple[str, ...] = ()  # the keys of `Objective.terms`, in order

    def __init__(self, config: Config):
        super().__init__()
        self.latent_dim = config.model.latent_dim
        self.shape = (config.data.channels, config.data.image_size, config.data.image_size)
        self.prior = self.Prior(self.latent_dim)

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def at_epoch(self, epochs_done: float) -> None:
        """Told by the trainer before each step how far training is (in epochs, fractional),
        for objectives that change over training."""

    def training_noise(self, n: int, device) -> torch.Tensor | None:
        """The noise a training step of n images needs, drawn by the trainer (so that every
        rank of a torchrun world draws the same) and passed to `objective`; None for none."""
        return None

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images decoded from the code means of x."""
        return self.decode_image(self.encode(x, labels)[0], labels)

    def decode_image(self, code, labels=None):
        return self.likelihood.mean(self.decode(code, labels))

    def forward(self, x, noise=None, labels=None) -> Objective:
        """The objective; `forward` so that DistributedDataParallel and torch.compile, which
        wrap a module's forward, see the whole computation."""
        return self.objective(x, noise, labels)

    @torch.inference_mode()
    def prepare_sampling(self, batches) -> None:
        """Fit the sampling prior to the codes of the training images, given as an iterable of
        batches (call after training changes the codes)."""
        if self.prior.fitted_to_codes:
            self.prior.fit(torch.cat([self.encode(batch)[0] for batch in batches]))

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        """Map standard-normal noise to codes of the kind the model decodes."""
        return self.prior.codes_from_normal(noise)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before each kind had its own prior hold the training codes'
        # spread at the top level, a VAE's unused.
        for name in ("code_mean", "code_std"):
            old = state_dict.pop(prefix + name, None)
            if old is not None and self.prior.fitted_to_codes:
                state_dict[f"{prefix}prior.{name}"] = old
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def sample_labels(self, n: int) -> torch.Tensor | None:
        """The labels to decode n sampled codes with: every class in turn (None: no labels)."""
        return None

    def sample_codes(self, n: int, generator: torch.Generator | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        noise = torch.randn(n, self.latent_dim, generator=generator)
        return self.codes_from_normal(temperature * noise.to(self.device))


class Autoencoder(Model):
    """A deterministic code: encoder and decoder networks, reconstruction loss only. It has no
    prior, so it samples from the measured spread of its training codes."""
    term_names = ("recon",)

    def __init__(self, config: Config, n_code_outputs: int | None = None, n_labels: int = 0):
        super().__init__(config)
        self.network = NETWORKS[config.model.network]
        self.likelihood = build_likelihood(config.model)
        self.encoder, self.decoder = self.network.build(
            self.shape, config.model.hidden, n_code_outputs or self.latent_dim, self.latent_dim,
            ACTIVATIONS[config.model.activation], n_labels, self.likelihood.outputs_per_pixel)

    def encode(self, x, labels=None):
        return self.encoder(x), None

    def decode(self, code, labels=None):
        return self.decoder(code)

    def objective(self, x, noise=None, labels=None) -> Objective:
        recon = self.likelihood.nll(self.decode(self.encode(x, labels)[0], labels), x)
        return Objective(loss=recon, terms={"recon": recon})


class VAE(Autoencoder):
    """The encoder gives a mean m and a log-scale s per latent dimension; training decodes the
    noisy code c = m + exp(s)·e, e ~ N(0, I), and pays the KL of N(m, exp(s)²) to the prior,
    weighted by beta (1 gives the ELBO).

    Two training-only changes to the KL term: warm-up scales it from 0 up to beta over the
    first epochs, and free bits stop pushing a latent dimension's batch-average KL below a
    floor. Evaluation (eval mode) always measures recon + beta·KL."""
    defines_density = True
    Prior = StandardNormal

    def __init__(self, config: Config, n_labels: int = 0):
        super().__init__(config, n_code_outputs=2 * config.model.latent_dim, n_labels=n_labels)
        self.beta = config.model.beta
        self.kl_warmup_epochs, self.free_bits = config.model.kl_warmup_epochs, config.model.free_bits
        self.kl_weight = self.beta if self.kl_warmup_epochs == 0 else 0.0
        # Any other loss is no bound on anything: the real -ELBO is reported beside it.
        loss_is_elbo = self.beta == 1 and self.kl_warmup_epochs == 0 and self.free_bits == 0
        self.loss_name = "-ELBO" if loss_is_elbo else f"loss (beta={self.beta:g})"
        self.term_names = ("recon", "kl") if loss_is_elbo else ("recon", "kl", "neg_elbo")

    def at_epoch(self, epochs_done):
        if self.kl_warmup_epochs:
            self.kl_weight = self.beta * min(1.0, epochs_done / self.kl_warmup_epochs)

    def training_noise(self, n, device):
        return torch.randn(n, self.latent_dim, device=device)

    def encode(self, x, labels=None):
        mean, log_scale = self.encoder(x).chunk(2, dim=1)
        return mean, log_scale

    def objective(self, x, noise=None, labels=None) -> Objective:
        """noise ~ N(0, I) for the code, drawn here unless the caller supplies it."""
        mean, log_scale = self.encode(x, labels)
        if noise is None:
            noise = torch.randn_like(mean)
        code = mean + torch.exp(log_scale) * noise
        recon = self.likelihood.nll(self.decode(code, labels), x)
        kl_per_dim = kl_to_standard_normal(mean, log_scale)
        kl = kl_per_dim.sum(1)
        terms = {"recon": recon, "kl": kl}
        if "neg_elbo" in self.term_names:
            terms["neg_elbo"] = recon + kl
        if not self.training:
            loss = recon + self.beta * kl
        else:
            loss = recon + self.kl_weight * (free_bits_kl(kl_per_dim, self.free_bits) if self.free_bits else kl)
        return Objective(loss=loss, terms=terms, stats={"mean_log_scale": log_scale.mean(1)})


class IWAE(VAE):
    """Burda et al.'s importance-weighted autoencoder: the VAE's networks, trained on the bound
    log (1/k) Σ_i p(x, z_i) / q(z_i | x) with k posterior samples z_i per image, which is
    tighter than the ELBO for k > 1 and is the ELBO (in expectation) for k = 1."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.k = config.model.k
        self.loss_name = f"-IWAE bound (k={self.k})"
        self.term_names = ("recon", "kl", "neg_elbo")

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
        log_weights = -nll + log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - log_normal(z, mean, log_scale)
        loss = math.log(self.k) - torch.logsumexp(log_weights, dim=1)
        recon = nll.mean(1)
        kl = kl_to_standard_normal(mean, log_scale).sum((1, 2))
        return Objective(loss=loss, terms={"recon": recon, "kl": kl, "neg_elbo": recon + kl},
                         stats={"mean_log_scale": log_scale.mean((1, 2))})


class ConditionalVAE(VAE):
    """A VAE whose encoder and decoder also read each image's class as a one-hot vector (Sohn et
    al. 2015): the label says which class, so the code is left to hold the rest (the style), and
    decoding one code with different labels draws the classes in one style."""
    conditional = True

    def __init__(self, config: Config, classes: list[str]):
        super().__init__(config, n_labels=len(classes))
        self.classes = list(classes)

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


def free_bits_kl(kl_per_dim: torch.Tensor, floor: float) -> torch.Tensor:
    """Per image, the KL with each dimension's batch average held at least at `floor` nats:
    its batch sum is batch · Σ_j max(mean_b KL_bj, floor), and a dimension below the floor
    gets no gradient (the raw and the batch-mean parts cancel)."""
    batch_mean = kl_per_dim.mean(0)
    return (kl_per_dim + (batch_mean.clamp_min(floor) - batch_mean)).sum(1)


class PCA(Model):
    """The linear encoder/decoder (W, Wᵀ): the top principal directions, fitted once by SVD."""
    fitted_once = True
    term_names = ("squared_error",)

    def __init__(self, config: Config):
        super().__init__(config)
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


MODELS = {"vae": VAE, "iwae": IWAE, "ae": Autoencoder, "pca": PCA}
CONDITIONAL_MODELS = {"vae": ConditionalVAE}  # model.conditional: true of each kind that has one


def build(config: Config, classes: list[str] | None = None) -> Model:
    """The configured model; a conditional one needs the class names of its data."""
    if config.model.conditional:
        if not classes:
            raise unlabelled_data_error(config, "the training data")
        return CONDITIONAL_MODELS[config.model.kind](config, classes)
    return MODELS[config.model.kind](config)
