"""Each model kind's options: the `model.*` keys it reads, with defaults, ranges and help, and
its traits as class variables. No torch here: config.py builds `ModelConfig` and the rules of
which kind reads which key from these classes (through the registry in vae_cli/models.py), and
the CLI checks a config with them before torch is loaded.

A key declared by several kinds must be declared the same way (inherit it)."""

from dataclasses import dataclass
from typing import ClassVar

from ..fields import option


@dataclass
class KindOptions:
    """What every kind reads, and the traits the rest of the tool asks about."""
    has_density: ClassVar[bool] = False  # the ELBO, the NLL and bits/dim make sense
    fitted_once: ClassVar[bool] = False  # fitted in one shot, no training loop
    latent_dim: int = option(8, "size of the code", minimum=1, maximum=4096)

    @property
    def objective_changes_over_training(self) -> bool:
        """Whether the objective moves during training (a replayed CUDA graph could not follow)."""
        return False


@dataclass
class NetworkOptions(KindOptions):
    """Kinds with encoder and decoder networks (vae_cli/networks.py) and a pixel likelihood
    (vae_cli/objectives.py)."""
    network: str = option("conv", "encoder/decoder family; the decoder mirrors the encoder", choices=("mlp", "conv"))
    hidden: list[int] = option([16, 32], "mlp: hidden layer sizes; conv: channels per stride-2 layer")
    activation: str = option("relu", "nonlinearity between layers", choices=("relu", "tanh", "elu", "silu"))
    likelihood: str = option("bernoulli", "decoder distribution over pixels: bernoulli, gaussian, or logistic "
                                          "(discretized over the 256 values of 8-bit images: honest bits/dim)",
                             choices=("bernoulli", "gaussian", "logistic"))
    gaussian_scale: float = option(0.1, "pixel noise standard deviation (initial value if learned)",
                                   above=0.0, used_with=("likelihood", ("gaussian",)))
    learn_scale: bool = option(False, "learn the pixel noise scale", used_with=("likelihood", ("gaussian",)))


@dataclass
class PCAOptions(KindOptions):
    """pca: linear, fitted once."""
    fitted_once: ClassVar[bool] = True


@dataclass
class AutoencoderOptions(NetworkOptions):
    """ae: deterministic code."""


@dataclass
class WeightedKLOptions(NetworkOptions):
    """Kinds trained on recon + beta·KL to their prior."""
    has_density: ClassVar[bool] = True
    beta: float = option(1.0, "weight of the KL term (0 = no KL: the model collapses to an autoencoder; "
                              "the -ELBO is reported beside any other value)", minimum=0.0)
    kl_warmup_epochs: float = option(0.0, "training: the KL weight rises linearly from 0 to beta over this many "
                                          "epochs (0 = none)", minimum=0.0)
    kl_warmup_delay: float = option(0.0, "training: epochs at KL weight 0 before the warm-up starts, for the "
                                         "decoder to learn to use the code first (0 = none)", minimum=0.0)

    @property
    def objective_changes_over_training(self) -> bool:
        return self.kl_warmup_epochs > 0 or self.kl_warmup_delay > 0


@dataclass
class VAEOptions(WeightedKLOptions):
    """vae: the variational autoencoder (also conditional on a label)."""
    free_bits: float = option(0.0, "training: nats per latent dimension the KL is not pushed below, as a batch "
                                   "average (Kingma et al. 2016; 0 = none)", minimum=0.0)
    conditional: bool = option(False, "encoder and decoder also read each image's class, one-hot (needs "
                                      "mnist, fashion-mnist or a folder of class subfolders); "
                                      "then vae sample --label NAME")


@dataclass
class IWAEOptions(NetworkOptions):
    """iwae: importance-weighted bound."""
    has_density: ClassVar[bool] = True
    k: int = option(5, "posterior samples per image in the importance-weighted bound (1 = the ELBO)", minimum=1)


@dataclass
class VampOptions(WeightedKLOptions):
    """vamp: a VAE whose prior is the VampPrior (Tomczak and Welling 2018)."""
    free_bits: ClassVar[float] = 0.0  # the KL to a mixture has no per-dimension value to hold a floor on
    pseudo_inputs: int = option(500, "learned pseudo-inputs whose posteriors, mixed equally, are the prior "
                                     "(Tomczak and Welling's 500)", minimum=1, maximum=100_000)


@dataclass
class TCVAEOptions(NetworkOptions):
    """tcvae: beta-TCVAE (Chen et al. 2018), the KL split with the total correlation weighted."""
    has_density: ClassVar[bool] = True
    tc_weight: float = option(6.0, "beta-TCVAE's beta: weight of the codes' total correlation in the loss (1 = the "
                                   "ELBO; the -ELBO is reported beside it)", minimum=0.0)


@dataclass
class TwoLayerOptions(NetworkOptions):
    """two_layer: a VAE with two stochastic layers (Burda et al. 2015); latent_dim is the top one."""
    has_density: ClassVar[bool] = True
    middle_dim: int = option(100, "size of the lower stochastic layer, between the image and the code "
                                  "(`hidden` are the layers between it and the image)", minimum=1, maximum=4096)
    middle_hidden: list[int] = option([100, 100], "hidden layer sizes between the two stochastic layers (each way)")
