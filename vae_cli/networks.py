"""The encoder/decoder networks the model kinds are built on: MLPs and stride-2 convolutions,
and how each reads a class label (conditional models)."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


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
