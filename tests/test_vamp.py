"""The VampPrior's maths: its density is the equal mixture of the pseudo-inputs' posteriors and
integrates to one, its samples come from those components, and `vae eval` measures with it."""

import math

import pytest
import torch

from vae_cli import evaluation, models

Normal, Independent = torch.distributions.Normal, torch.distributions.Independent

from trainer_steps import tiny_config


def vamp(latent_dim=2, pseudo_inputs=7, seed=0):
    torch.manual_seed(seed)
    model = models.build(tiny_config("model.kind=vamp", f"model.latent_dim={latent_dim}",
                                     f"model.pseudo_inputs={pseudo_inputs}"), dataset_size=96)
    with torch.no_grad():  # spread the pseudo-inputs so that the components differ
        model.prior.pseudo_inputs.uniform_(0, 1)
    return model.eval()


@torch.no_grad()
def test_the_density_is_the_equal_mixture_of_the_pseudo_inputs_posteriors():
    model = vamp(latent_dim=5)
    mean, log_scale = model.encode(model.prior.pseudo_inputs.clamp(0, 1))
    components = torch.distributions.Independent(torch.distributions.Normal(mean.double(), log_scale.double().exp()), 1)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(len(mean), dtype=torch.float64)), components)
    codes = torch.randn(3, 40, 5) * 2
    assert torch.allclose(model.prior.log_prob(codes).double(), mixture.log_prob(codes.double()), atol=1e-4)


@torch.no_grad()
def test_narrow_components_far_from_the_origin_keep_their_density_exact():
    """In float32, (z − m)² expanded as z² − 2zm + m² cancels for narrow components: a trained
    model learned to exploit that error (a KL of −237 nats)."""
    model = vamp(latent_dim=50, pseudo_inputs=3)
    with torch.no_grad():
        model.encoder[-1][-1].bias.copy_(torch.cat([torch.full((50,), 3.0), torch.full((50,), -7.0)]))
    mean, log_scale = model.prior.components()
    codes = mean[0] + log_scale[0].exp() * torch.randn(100, 50)
    components = Independent(Normal(mean.double(), log_scale.double().exp()), 1)
    exact = torch.logsumexp(components.log_prob(codes.double()[:, None]), 1) - math.log(3)
    assert torch.allclose(model.prior.log_prob(codes).double(), exact, atol=1e-3)


@torch.no_grad()
def test_the_density_integrates_to_one():
    model = vamp(latent_dim=2)
    side = torch.linspace(-8, 8, 801)
    grid = torch.stack(torch.meshgrid(side, side, indexing="ij"), -1)
    cell = float(side[1] - side[0]) ** 2
    assert float(model.prior.log_prob(grid).double().exp().sum() * cell) == pytest.approx(1.0, abs=1e-3)


@torch.no_grad()
def test_random_codes_come_from_the_components_and_repeat_with_the_seed():
    model = vamp(latent_dim=3)
    mean, log_scale = model.prior.components()
    at_zero = model.sample_codes(200, torch.Generator().manual_seed(0), temperature=0.0)
    is_mean = (at_zero[:, None] == mean).all(-1)  # temperature 0: each code is one component's mean
    assert is_mean.any(1).all() and is_mean.any(0).all()  # and 200 draws use all 7 components
    codes = model.sample_codes(20000, torch.Generator().manual_seed(1))
    assert torch.equal(codes, model.sample_codes(20000, torch.Generator().manual_seed(1)))
    assert not torch.equal(codes, model.sample_codes(20000, torch.Generator().manual_seed(2)))
    # the mixture's mean and variance per dimension
    centre = mean.mean(0)
    variance = (log_scale.exp() ** 2 + mean ** 2).mean(0) - centre ** 2
    assert torch.allclose(codes.mean(0), centre, atol=0.05)
    assert torch.allclose(codes.var(0), variance, rtol=0.05)


@torch.no_grad()
def test_grids_map_noise_through_the_mixtures_mean_and_spread():
    model = vamp(latent_dim=3)
    codes = model.codes_from_normal(torch.randn(20000, 3))
    assert torch.allclose(codes.mean(0), model.sample_codes(20000, torch.Generator().manual_seed(2)).mean(0), atol=0.05)


@torch.no_grad()
def test_eval_measures_the_likelihood_with_the_vamp_prior(monkeypatch):
    """Shifting log p(z) by c shifts the importance-weighted NLL by exactly -c: eval reads the
    model's prior, not N(0, I)."""
    model = vamp(latent_dim=4)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(0)
    before = evaluation.evaluate(model, x, k=16, batch_size=6)
    log_prob = model.prior.log_prob
    monkeypatch.setattr(model.prior, "log_prob", lambda codes: log_prob(codes) + 3.0)
    torch.manual_seed(0)
    after = evaluation.evaluate(model, x, k=16, batch_size=6)
    assert after["nll"] == pytest.approx(before["nll"] - 3.0, abs=1e-4)
    assert after["kl"] == pytest.approx(before["kl"] - 3.0, abs=1e-4)


def test_the_kl_is_estimated_from_the_posterior_sample():
    """The mixture has no closed-form KL: the objective pays log q(z|x) - log p(z) at its code."""
    model = vamp(latent_dim=4)
    x = torch.rand(5, 1, 28, 28)
    noise = torch.randn(5, 4)
    mean, log_scale = model.encode(x)
    code = mean + log_scale.exp() * noise
    log_q = (-0.5 * noise ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).sum(1)
    expected = log_q - model.prior.log_prob(code)
    assert torch.allclose(model.objective(x, noise).terms["kl"], expected, atol=1e-5)


def test_built_for_training_the_pseudo_inputs_start_at_training_images():
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(0)
    model = models.build(tiny_config("model.kind=vamp", "model.pseudo_inputs=5"), dataset_size=40, train_images=images)
    matches = [[torch.allclose(u, image.float() / 255) for image in images] for u in model.prior.pseudo_inputs.detach()]
    assert all(sum(row) == 1 for row in matches)  # each pseudo-input is one training image
