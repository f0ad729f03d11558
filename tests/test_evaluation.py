"""`vae eval`'s estimates against an exact answer: for a linear decoder with Gaussian noise
and a Gaussian prior (probabilistic PCA), p(x) = N(x; b, W Wᵀ + σ² I) in closed form."""

import math

import pytest
import torch

from vae_cli import config, evaluation, models
from vae_cli.objectives import log_normal

PIXELS, LATENT, SIGMA = 64, 2, 0.5


@pytest.fixture(scope="module")
def linear_gaussian():
    torch.manual_seed(0)
    cfg = config.load(None, ["data.image_size=8", "model.network=mlp", "model.hidden=[]", f"model.latent_dim={LATENT}",
                             "model.likelihood=gaussian", f"model.gaussian_scale={SIGMA}"])
    model = models.build(cfg)
    decoder, encoder = model.decoder[0][0], model.encoder[1][0]
    W, b = 0.6 * torch.randn(PIXELS, LATENT), 0.2 * torch.randn(PIXELS)
    # The exact posterior is N(M⁻¹Wᵀ(x − b), σ² M⁻¹) with M = WᵀW + σ²I. The encoder gets its
    # mean right but a diagonal, too-narrow scale, so importance sampling has work to do.
    M_inv = torch.linalg.inv(W.T @ W + SIGMA ** 2 * torch.eye(LATENT))
    posterior_log_scale = 0.5 * torch.log(SIGMA ** 2 * torch.diagonal(M_inv)) - 0.6
    with torch.no_grad():
        decoder.weight.copy_(W)
        decoder.bias.copy_(b)
        encoder.weight.copy_(torch.cat([M_inv @ W.T, torch.zeros(LATENT, PIXELS)]))
        encoder.bias.copy_(torch.cat([-(M_inv @ W.T @ b), posterior_log_scale]))
    x = (torch.randn(300, LATENT) @ W.T + b + SIGMA * torch.randn(300, PIXELS)).view(300, 1, 8, 8)
    exact = -torch.distributions.MultivariateNormal(b, W @ W.T + SIGMA ** 2 * torch.eye(PIXELS)).log_prob(x.flatten(1))
    return model.eval(), x, exact


def test_importance_weighted_nll_approaches_the_exact_value_from_above(linear_gaussian):
    model, x, exact = linear_gaussian
    torch.manual_seed(1)
    estimates = {k: float(evaluation.iwae_nll(evaluation.log_weights(model, x, k)[0]).mean())
                 for k in (1, 10, 100, 2000)}
    exact_mean = float(exact.mean())
    assert estimates[1] > estimates[10] > estimates[100] > estimates[2000] >= exact_mean - 0.01
    assert estimates[1] - exact_mean > 0.2  # the encoder is imperfect, so k matters
    assert estimates[2000] - exact_mean < 0.02


def test_neg_elbo_bounds_the_iw_estimate_which_bounds_the_exact_nll(linear_gaussian):
    model, x, exact = linear_gaussian
    torch.manual_seed(2)
    report = evaluation.evaluate(model, x, k=500, batch_size=64)
    assert report["neg_elbo"] > report["nll"] > float(exact.mean()) - 0.01
    assert report["nll"] - float(exact.mean()) < 0.1
    # Gaussian pixels: the density moves from the [0, 1] scale to the 0..255 scale first.
    assert report["bits_per_dim"] == pytest.approx((report["nll"] / PIXELS + math.log(256)) / math.log(2))
    assert report["active_units"] == LATENT and len(report["kl_per_dim"]) == LATENT


def test_chunking_does_not_change_the_estimate(linear_gaussian, monkeypatch):
    model, x, _ = linear_gaussian
    torch.manual_seed(3)
    whole = evaluation.log_weights(model, x[:10], 40)[0]
    monkeypatch.setattr(evaluation, "ELEMENT_BUDGET", 10 * PIXELS * 3)  # chunks of 3 samples
    torch.manual_seed(3)
    chunked = evaluation.log_weights(model, x[:10], 40)[0]
    assert chunked.shape == whole.shape == (40, 10)
    assert torch.isfinite(chunked).all()
    assert abs(float(evaluation.iwae_nll(chunked).mean() - evaluation.iwae_nll(whole).mean())) < 0.1


def test_importance_weights_equal_scoring_k_copies_of_the_batch(linear_gaussian):
    # The weights come from decoder outputs broadcast against the batch; drawing the same noise
    # and scoring k stacked copies of x, term by term, must give the same numbers.
    model, x, _ = linear_gaussian
    x = x[:7]
    torch.manual_seed(4)
    weights, _, mean, log_scale = evaluation.log_weights(model, x, 30)
    torch.manual_seed(4)
    z = mean + torch.exp(log_scale) * torch.randn(30, *mean.shape)
    with torch.no_grad():
        nll = model.likelihood.nll(model.decode(z.reshape(30 * 7, -1)), x.repeat(30, 1, 1, 1)).view(30, 7)
    zeros = torch.zeros_like(mean)
    by_copies = -nll + log_normal(z, zeros, zeros) - log_normal(z, mean, log_scale)
    assert torch.allclose(weights, by_copies, atol=1e-4)
