"""What every model kind shares: the interface the trainer, evaluation and pictures use, the
result object a model reports its loss in, the priors, and what a model is built from.

  encode(x, labels) -> (mean, log_scale)  the code; log_scale is None for deterministic codes
  decode(code, labels) -> output          likelihood parameters (logits, pixel means, or means and log-scales)
  decode_image(code, labels) -> images    pixels in [0, 1], for pictures
  reconstruct(x, labels) -> images        decoded from the code means
  objective(x, noise, labels) -> Objective  the loss to minimise and named terms, per image
  log_likelihood(x, codes, labels)        log p(x | z) (kinds with a density)
  importance_log_weights(x, k, chunk, labels, timed)  log p(x, z) − log q(z | x), k posterior samples (`vae eval`)
  prior                                   log p(z), the KL to it, and how random codes are drawn
  sample_codes(n, ...) -> codes           random codes to decode into new images
What differs between kinds is a trait of its options (kinds/options.py) or a class property
here; the trainer, evaluation and `vae compare` read those and the reported terms, never a
kind's name or formula. `labels`, the class index of each image, is read by conditional models
only (None for the others).
"""

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from ..objectives import kl_to_standard_normal, log_normal


@dataclass(frozen=True)
class ModelContext:
    """What a model is built for besides its options: the image shape (channels, height,
    width), the class names of labelled data (conditional models), the number of training
    images (objectives that estimate dataset-wide quantities), and the training images
    themselves (uint8 or float, for models that start from data; None when a model is built to
    load weights into)."""
    shape: tuple[int, int, int]
    classes: list[str] | None = None
    dataset_size: int | None = None
    train_images: torch.Tensor | None = None


@dataclass
class Objective:
    """What a model reports for a batch: `loss`, the per-image value training minimises, and
    `terms`, named per-image values to show and log (their meaning is the model's business).
    `stats` are diagnostics measured on the test split only."""
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


TERM_LABELS = {"kl": "KL", "neg_elbo": "-ELBO", "squared_error": "squared error",  # else the name
               "index_code_mi": "MI", "total_correlation": "TC", "dimension_kl": "dim-KL"}


class Prior(nn.Module):
    """A density over codes and a way to draw from it. Where the KL of a Gaussian posterior to it
    has no closed form, it is estimated from the posterior sample the caller drew."""
    fitted_to_codes = False  # fitted to the training codes after training (`fit`)

    def fit(self, codes: torch.Tensor) -> None:
        pass

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        """Standard-normal noise (n, latent_dim) mapped to codes drawn from this prior."""
        raise NotImplementedError

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over the last (latent) dimension."""
        raise NotImplementedError

    def kl_per_dim(self, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor | None:
        """KL(N(mean, exp(log_scale)²) || prior) per latent dimension where it has a closed form, else None."""
        return None

    def kl(self, mean: torch.Tensor, log_scale: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """KL(q || prior) per image for q = N(mean, exp(log_scale)²): exact where kl_per_dim is,
        else the one-sample estimate log q(z) − log p(z) at `codes` drawn from q."""
        per_dim = self.kl_per_dim(mean, log_scale)
        if per_dim is not None:
            return per_dim.sum(-1)
        return log_normal(codes, mean, log_scale) - self.log_prob(codes)


class CodeSpread(Prior):
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


class StandardNormal(Prior):
    """The prior N(0, I) of a VAE: nothing to measure."""

    def __init__(self, latent_dim: int):
        super().__init__()

    def codes_from_normal(self, noise: torch.Tensor) -> torch.Tensor:
        return noise

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        return log_normal(codes, torch.zeros_like(codes), torch.zeros_like(codes))

    def kl_per_dim(self, mean, log_scale):
        return kl_to_standard_normal(mean, log_scale)


class Model(nn.Module):
    """The base of every kind: its options (`self.options`, whose class carries the kind's
    traits), the image shape, and the prior. Subclasses say what differs as class properties."""
    conditional = False      # encodes and decodes given a label (the class names are in `classes`)
    classes: list[str] | None = None
    Prior = CodeSpread       # the sampling prior: measured from the training codes, or a density
    loss_name = "loss"       # what the epoch line calls `Objective.loss`
    term_names: tuple[str, ...] = ()  # the keys of `Objective.terms`, in order

    def __init__(self, options, context: ModelContext):
        super().__init__()
        self.options = options
        self.latent_dim = options.latent_dim
        self.shape = context.shape
        self.prior = self.Prior(self.latent_dim)

    @property
    def defines_density(self) -> bool:
        """The ELBO, the NLL and bits/dim make sense."""
        return self.options.has_density

    @property
    def fitted_once(self) -> bool:
        """Fitted in one shot (`fit(images)`), no training loop."""
        return self.options.fitted_once

    @property
    def objective_changes_over_training(self) -> bool:
        """Whether `at_epoch` changes the objective (a replayed CUDA graph could not follow)."""
        return self.options.objective_changes_over_training

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
