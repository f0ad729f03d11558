"""vae-cli: train, evaluate and sample Variational Autoencoders from the command line."""

__version__ = "0.1.0"
