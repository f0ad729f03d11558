"""Walking a trained model's latent space: sampling new images and interpolating between codes."""

import torch


@torch.inference_mode()
def sample_images(model, n: int, seed: int, temperature: float = 1.0, batch_size: int = 1000) -> torch.Tensor:
    """n images decoded from codes drawn with `seed` (the prior for a VAE, the training codes'
    spread for PCA and autoencoders), scaled by `temperature`."""
    codes = model.sample_codes(n, generator=torch.Generator().manual_seed(seed), temperature=temperature)
    return torch.cat([model.decode_image(codes[i:i + batch_size]) for i in range(0, n, batch_size)])


def interpolate_codes(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "linear") -> torch.Tensor:
    """`steps` codes from a to b inclusive. Spherical interpolation keeps the norm typical of a
    Gaussian prior, where the straight line passes through the unusually short middle."""
    t = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)
    if method == "linear":
        return (1 - t) * a + t * b
    angle = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1, 1))
    if angle < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)


INTERPOLATIONS = ("linear", "slerp")


@torch.inference_mode()
def interpolation_strip(model, a: torch.Tensor, b: torch.Tensor, steps: int, method: str) -> torch.Tensor:
    """Decoded images along the path between the posterior means of images a and b: (steps, C, H, W)."""
    codes = model.encode(torch.stack([a, b]))[0]
    return model.decode_image(interpolate_codes(codes[0], codes[1], steps, method))
