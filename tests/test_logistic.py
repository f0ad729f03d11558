"""The discretized logistic likelihood for 8-bit pixels, against bin masses computed directly."""

import json

import torch
from PIL import Image

from vae_cli.objectives import DiscretizedLogistic

VALUES = torch.arange(256, dtype=torch.float64) / 255


LOGISTIC = DiscretizedLogistic()


def output(mean: torch.Tensor, scale: float) -> torch.Tensor:
    """A decoder output for images (..., C, H, W): the means, then the log-scales, along C."""
    return torch.cat([mean, torch.full_like(mean, scale).log()], dim=-3)


def direct_mass(value: torch.Tensor, mean: torch.Tensor, scale: float) -> torch.Tensor:
    """The logistic's mass on each pixel value's bin, as a difference of its CDF at the bin's
    edges, the end bins reaching to -inf and +inf."""
    k = torch.round(value * 255)
    cdf = lambda edge: torch.sigmoid((edge - mean) / scale)  # noqa: E731
    upper = torch.where(k >= 255, torch.ones_like(mean), cdf((k + 0.5) / 255))
    lower = torch.where(k <= 0, torch.zeros_like(mean), cdf((k - 0.5) / 255))
    return upper - lower


def test_the_256_values_of_a_pixel_have_total_mass_one():
    for scale in (0.002, 0.05, 1.0):
        for mean in (-0.3, 0.0, 0.5, 0.999, 1.7):
            every_value = VALUES.view(256, 1, 1, 1)
            means = torch.full((256, 1, 1, 1), mean, dtype=torch.float64)
            probabilities = LOGISTIC.log_probs(output(means, scale), every_value).exp()
            assert torch.isclose(probabilities.sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-9), (scale, mean)


def test_log_likelihood_of_a_tiny_image_is_the_log_of_the_direct_bin_masses():
    # A 3-channel 2x3 image with both end values, their neighbours and the middle.
    pixels = torch.tensor([0, 255, 1, 254, 128, 37, 0, 200, 255, 3, 90, 17, 250, 128, 66, 5, 254, 1], dtype=torch.float64)
    image = (pixels / 255).view(1, 3, 2, 3)
    # Means near the pixels (some beyond [0, 1]), so that the direct CDF differences keep their digits.
    noise = torch.randn(1, 3, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean = image + 0.1 * noise
    for scale in (0.05, 0.1, 0.5):
        nll = LOGISTIC.nll(output(mean, scale), image)
        expected = -direct_mass(image, mean, scale).log().sum()
        assert nll.shape == (1,) and torch.isclose(nll[0], expected, rtol=1e-10), (scale, float(nll[0]), float(expected))


def test_far_tail_bins_stay_finite_where_the_direct_difference_underflows():
    value, mean = torch.tensor([10 / 255, 240 / 255, 128 / 255]), torch.tensor([0.95, 0.02, 0.01])
    assert (direct_mass(value, mean, 0.005) == 0).all()  # in float32 the naive difference is 0: log 0
    mean.requires_grad_(True)
    log_scale = torch.full((3,), 0.005).log().requires_grad_(True)
    log_p = LOGISTIC.log_probs(torch.cat([mean, log_scale]).view(2, 3, 1), value.view(1, 3, 1)).flatten()
    # float64 still holds these masses, each computed in the tail where it is no difference of
    # two numbers near 1 (the value above the mean mirrored: 1 - x around 1 - mean, the same mass).
    above = value > mean.detach()
    exact = direct_mass(torch.where(above, 1 - value, value).double(),
                        torch.where(above, 1 - mean.detach(), mean.detach()).double(), 0.005).log()
    assert torch.allclose(log_p.double(), exact, rtol=1e-5), (log_p, exact)
    log_p.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


def test_an_rgb_folder_gets_bits_per_dim_without_an_offset(vae, runs_dir, tmp_path):
    """Images of a few flat colours: the trained model codes them in far fewer than the 8 bits
    per value that the raw bytes take, and bits/dim is the NLL alone."""
    folder = tmp_path / "flat"
    folder.mkdir()
    colours = [(200, 30, 30), (20, 180, 40), (30, 40, 220), (240, 240, 10)]
    for index in range(64):
        Image.new("RGB", (8, 8), colours[index % 4]).save(folder / f"{index}.png")
    settings = ["data.name=folder", f"data.path={folder}", "data.channels=3", "data.image_size=8",
                "model.likelihood=logistic", "model.network=mlp", "model.hidden=[64]", "model.latent_dim=2", "train.batch_size=8",
                "train.epochs=40", "train.lr=1e-2"]
    result = vae("train", *[a for s in settings for a in ("--set", s)], "--name", "flat")
    assert result.exit_code == 0, result.output
    result = vae("eval", "--k", 20)
    assert result.exit_code == 0, result.output
    report = json.loads((runs_dir / "flat" / "eval.json").read_text())
    print("bits/dim", report["bits_per_dim"], "NLL", report["nll"])
    assert abs(report["bits_per_dim"] - report["nll"] / (3 * 8 * 8) / 0.6931471805599453) < 1e-9
    assert report["bits_per_dim"] < 7  # the raw bytes: 8
