"""The registry of model kinds: the name `model.kind` takes, to the kind's options class (the
`model.*` keys it reads, and its traits; vae_cli/kinds/options.py) and its model class (a module
of vae_cli/kinds). config.py builds `ModelConfig` and the rules of which kind reads which key
from this table, the CLI its choices, and the contract tests (tests/test_kinds.py) test every
kind in it.

Adding a kind: its options class in kinds/options.py, its model in kinds/<name>.py, and one line
here. Model classes are imported when a model is built, so that reading this table (to check a
config, to list keys) does not load torch."""

import dataclasses
import importlib
from dataclasses import dataclass

from .kinds.options import (AutoencoderOptions, IWAEOptions, PCAOptions, TCVAEOptions, TwoLayerOptions,
                            VAEOptions, VampOptions)


@dataclass(frozen=True)
class Kind:
    summary: str                          # a few words for `vae keys` and the docs
    options: type                         # its dataclass of options, with the kind's traits
    model: str                            # "module.Class" in vae_cli/kinds
    conditional_model: str | None = None  # the variant for model.conditional: true, if any

    def model_class(self, conditional: bool = False) -> type:
        module, name = (self.conditional_model if conditional else self.model).split(".")
        return getattr(importlib.import_module(f".kinds.{module}", __package__), name)


KINDS = {
    "vae": Kind("the variational autoencoder", VAEOptions, "vae.VAE", conditional_model="vae.ConditionalVAE"),
    "iwae": Kind("importance-weighted bound", IWAEOptions, "iwae.IWAE"),
    "ae": Kind("deterministic code", AutoencoderOptions, "autoencoder.Autoencoder"),
    "pca": Kind("linear, fitted once", PCAOptions, "pca.PCA"),
    "tcvae": Kind("beta-TCVAE: the code's total correlation weighted", TCVAEOptions, "tcvae.TCVAE"),
    "two_layer": Kind("VAE with two stochastic layers (Burda et al.)", TwoLayerOptions, "two_layer.TwoLayerVAE"),
    "vamp": Kind("VAE with a learned mixture prior (VampPrior)", VampOptions, "vamp.VampVAE"),
}


def options_of(model_config):
    """The kind's own options object, from the flat `model` section of a Config."""
    kind = KINDS[model_config.kind]
    return kind.options(**{f.name: getattr(model_config, f.name) for f in dataclasses.fields(kind.options)})


def build(config, classes: list[str] | None = None, dataset_size: int | None = None, train_images=None):
    """The configured model; a conditional one needs the class names of its data. `dataset_size`
    (training images) is for objectives that estimate dataset-wide quantities, `train_images`
    for models that start from data."""
    from .kinds.base import ModelContext

    kind, options = KINDS[config.model.kind], options_of(config.model)
    context = ModelContext((config.data.channels, config.data.image_size, config.data.image_size),
                           classes, dataset_size, train_images)
    conditional = getattr(options, "conditional", False)
    if conditional and not classes:
        from .config import unlabelled_data_error
        raise unlabelled_data_error(config, "the training data")
    return kind.model_class(conditional)(options, context)
