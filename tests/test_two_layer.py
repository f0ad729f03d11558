"""The two-stochastic-layer VAE's maths: Burda et al.'s architecture, its weight
log p(x, h1, h2) − log q(h1, h2 | x) against a computation with torch.distributions, and
`vae eval` weighing samples of both layers."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vae_cli import config, evaluation, models

from trainer_steps import tiny_config

ROOT = Path(__file__).resolve().parents[1]
Normal, Independent, Bernoulli = torch.distributions.Normal, torch.distributions.Independent, torch.distributions.Bernoulli


def two_layer(seed=0):
    torch.manual_seed(seed)
    return models.build(tiny_config("model.kind=two_layer", "model.middle_dim=6", "model.middle_hidden=[5]",
                                    "model.latent_dim=3")).eval()


def linear_sizes(network):
    return [(m.in_features, m.out_features) for m in network.modules() if isinstance(m, nn.Linear)]


def test_the_shipped_config_is_burdas_architecture():
    model = models.build(config.load(ROOT / "configs" / "mnist-two-layer.yaml", []))
    assert linear_sizes(model.encoder) == [(784, 200), (200, 200), (200, 2 * 100)]      # q(h1 | x)
    assert linear_sizes(model.encoder_top) == [(100, 100), (100, 100), (100, 2 * 50)]  # q(h2 | h1)
    assert linear_sizes(model.decoder_top) == [(50, 100), (100, 100), (100, 2 * 100)]  # p(h1 | h2)
    assert linear_sizes(model.decoder) == [(100, 200), (200, 200), (200, 784)]          # p(x | h1)
    assert {type(m) for m in model.modules() if type(m).__module__ == "torch.nn.modules.activation"} == {nn.Tanh}


def gaussian(parameters):
    mean, log_scale = parameters.double().chunk(2, dim=-1)
    return Independent(Normal(mean, log_scale.exp()), 1)


@torch.no_grad()
def test_the_weight_is_the_joint_over_both_layers_against_the_posterior_over_both():
    model = two_layer()
    x = (torch.rand(4, 1, 28, 28) < 0.4).float()
    noise = torch.randn(2, 4, 6 + 3)  # two samples per image
    log_likelihood, log_prior_ratio = model.log_weight_parts(x, noise)

    q_h1 = gaussian(model.encoder(x))
    h1 = q_h1.mean + q_h1.stddev * noise[..., :6].double()
    q_h2 = gaussian(model.encoder_top(h1.float()))
    h2 = q_h2.mean + q_h2.stddev * noise[..., 6:].double()
    p_h1 = gaussian(model.decoder_top(h2.float()))
    p_h2 = Independent(Normal(torch.zeros_like(h2), 1.0), 1)
    logits = model.decoder(h1.float().flatten(0, 1)).unflatten(0, (2, 4)).double()
    p_x = Independent(Bernoulli(logits=logits), 3)
    assert torch.allclose(log_likelihood.double(), p_x.log_prob(x.double()), atol=1e-3)
    expected = p_h1.log_prob(h1) + p_h2.log_prob(h2) - q_h1.log_prob(h1) - q_h2.log_prob(h2)
    assert torch.allclose(log_prior_ratio.double(), expected, atol=1e-4)


@torch.no_grad()
def test_the_objective_is_the_one_sample_elbo():
    model = two_layer()
    x, noise = torch.rand(5, 1, 28, 28), torch.randn(5, 9)
    log_likelihood, log_prior_ratio = model.log_weight_parts(x, noise)
    objective = model.objective(x, noise)
    assert torch.equal(objective.terms["recon"], -log_likelihood) and torch.equal(objective.terms["kl"], -log_prior_ratio)
    assert torch.equal(objective.loss, -(log_likelihood + log_prior_ratio))


@torch.no_grad()
def test_eval_weighs_samples_of_both_layers():
    model = two_layer()
    x = torch.rand(5, 1, 28, 28)
    torch.manual_seed(3)
    weights, kl, mean, log_scale = evaluation.log_weights(model, x, 7)
    torch.manual_seed(3)
    log_likelihood, log_prior_ratio = model.log_weight_parts(x, torch.randn(7, 5, 9))
    assert torch.allclose(weights, log_likelihood + log_prior_ratio)
    assert torch.allclose(kl, -log_prior_ratio.double().mean(0))
    assert mean.shape == log_scale.shape == (5, 3)  # the code: the top layer


@torch.no_grad()
def test_more_importance_samples_tighten_the_bound():
    model = two_layer()
    x = (torch.rand(10, 1, 28, 28) < 0.3).float()
    torch.manual_seed(0)
    report = evaluation.evaluate(model, x, k=2000, batch_size=10)
    few = [float(evaluation.iwae_nll(evaluation.log_weights(model, x, 2)[0]).mean()) for _ in range(200)]
    # the 2-sample bound, averaged over draws, lies between the 2000-sample one and the ELBO
    assert report["nll"] < sum(few) / len(few) < report["neg_elbo"]
    assert report["kl_per_dim"] is None and math.isfinite(report["kl"])


def test_codes_decode_through_the_mean_of_the_middle_layer():
    model = two_layer()
    code = torch.randn(4, 3)
    middle = model.decoder_top(code).chunk(2, dim=-1)[0]
    assert torch.equal(model.decode_image(code), torch.sigmoid(model.decoder(middle)))
    with pytest.raises(Exception):
        model.decode(torch.randn(4, 6))  # a code is the top layer's, not the middle's
