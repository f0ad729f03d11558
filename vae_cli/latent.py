"""Walking a trained model's latent space: sampling new images and interpolating between codes."""

import torch

from .interpolations import INTERPOLATIONS


@torch.inference_mode()
def sample_images(model, n: int, seed: int, temperature: float = 1.0, batch_size: int = 1000,
                  sampler=None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images decoded from codes drawn with `seed` from `sampler` (anything with the model's
    `sample_codes`, such as samplers.GaussianMixture), by default the model's own prior (N(0, I)
    for a VAE, the training codes' spread for PCA and autoencoders), scaled by `temperature`.
    A conditional model decodes them with `labels`, by default every class in turn."""
    codes = (sampler or model).sample_codes(n, generator=torch.Generator().manual_seed(seed),
                                            temperature=temperature).to(model.device)
    labels = model.sample_labels(n) if labels is None else labels
    return torch.cat([model.decode_image(codes[i:i + batch_size], None if labels is None else labels[i:i + batch_size])
                      for i in range(0, n, batch_size)])


def interpolate_codes(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """`steps` codes from a to b inclusive, along the path `method` names (INTERPOLATIONS)."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {method!r}: use one of {', '.join(INTERPOLATIONS)}")
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    return INTERPOLATIONS[method](a, b, t)


@torch.inference_mode()
def interpolation_strip(model, a: torch.Tensor, b: torch.Tensor, steps: int, method: str,
                        label: torch.Tensor | None = None) -> torch.Tensor:
    """Decoded images along the path between the posterior means of images a and b: (steps, C, H, W);
    a conditional model encodes both and decodes the path with the one class `label`."""
    codes = model.encode(torch.stack([a, b]), None if label is None else label.expand(2))[0]
    return model.decode_image(interpolate_codes(codes[0], codes[1], steps, method),
                              None if label is None else label.expand(steps))


@torch.inference_mode()
def per_label(model, n: int, seed: int) -> torch.Tensor:
    """A conditional model's classes, one row each, decoded from the same n codes: the label
    changes the class, the code keeps the style. (classes, n, C, H, W)"""
    codes = model.sample_codes(n, generator=torch.Generator().manual_seed(seed))
    return torch.stack([model.decode_image(codes, torch.full((n,), index, device=model.device))
                        for index in range(len(model.classes))])


def gaussian_quantiles(n: int, device=None) -> torch.Tensor:
    """n evenly spaced quantiles of N(0, 1), from the 5% to the 95% point."""
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, n, device=device))


@torch.inference_mode()
def manifold(model, per_side: int = 20) -> torch.Tensor:
    """Decoded images of a regular grid of 2-D codes placed at Gaussian quantiles, rows from
    high to low second coordinate: (per_side², C, H, W)."""
    q = gaussian_quantiles(per_side)
    grid = torch.stack(torch.meshgrid(q, q.flip(0), indexing="xy"), dim=-1).reshape(-1, 2)
    return model.decode_image(model.codes_from_normal(grid.to(model.device)))


@torch.inference_mode()
def code_variance(model, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Variance over `images` of each code dimension's mean: how much a dimension is used."""
    return model.encode(images, labels)[0].var(0)


@torch.inference_mode()
def traversals(model, image: torch.Tensor, dims: list[int], steps: int = 9,
               label: torch.Tensor | None = None) -> torch.Tensor:
    """For each dimension in `dims`, decoded codes that vary that one dimension from the 5%
    to the 95% point of its (prior or training-code) distribution around the code of `image`
    (with its `label`, for a conditional model): (len(dims), steps, C, H, W)."""
    labels = None if label is None else label.reshape(1).expand(steps)
    code = model.encode(image.unsqueeze(0), None if label is None else labels[:1])[0]
    rows = []
    for dim in dims:
        noise = torch.zeros(steps, code.shape[1], device=code.device)
        noise[:, dim] = gaussian_quantiles(steps, code.device)
        codes = code.repeat(steps, 1)
        codes[:, dim] = model.codes_from_normal(noise)[:, dim]
        rows.append(model.decode_image(codes, labels))
    return torch.stack(rows)
