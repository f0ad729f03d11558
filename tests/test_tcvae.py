"""beta-TCVAE's maths: the minibatch-weighted estimates of the KL's three parts, against the
exact average posterior of a data set small enough to be one batch."""

import math

import pytest
import torch

from vae_cli import models, runs, training
from vae_cli.config import ConfigError
from vae_cli.kinds.tcvae import kl_decomposition

from trainer_steps import tiny_config, train_epochs, trainer_for

Normal, Independent = torch.distributions.Normal, torch.distributions.Independent


def mixture(mean, scale):
    """The equal mixture of the diagonal Gaussians N(mean_j, scale_j²)."""
    weights = torch.distributions.Categorical(torch.ones(len(mean), dtype=mean.dtype))
    return torch.distributions.MixtureSameFamily(weights, Independent(Normal(mean, scale), 1))


def test_with_the_whole_data_set_in_the_batch_the_estimates_are_the_exact_parts_offset_by_log_n():
    """When the batch is the whole data set (M = N), Σ_j q(z | x_j) / N is the average posterior
    q(z) itself: MWS's 1/(N·M) puts every density log N lower, so the mutual information is the
    exact one + log N, the total correlation the exact one + (D − 1)·log N, and the
    dimension-wise KL the exact one − D·log N."""
    torch.manual_seed(0)
    n, dims = 6, 3
    # correlated posterior means: the code's dimensions depend on each other through the data
    base = torch.randn(n, 1, dtype=torch.float64)
    mean = base + 0.3 * torch.randn(n, dims, dtype=torch.float64)
    log_scale = torch.log(0.2 + torch.rand(n, dims, dtype=torch.float64))
    code = mean + log_scale.exp() * torch.randn(n, dims, dtype=torch.float64)
    parts = kl_decomposition(code, mean, log_scale, torch.tensor(n))

    scale = log_scale.exp()
    log_q_given_x = Independent(Normal(mean, scale), 1).log_prob(code)
    log_q = mixture(mean, scale).log_prob(code)
    log_marginals = sum(mixture(mean[:, d:d + 1], scale[:, d:d + 1]).log_prob(code[:, d:d + 1]) for d in range(dims))
    log_prior = Independent(Normal(torch.zeros_like(code), 1.0), 1).log_prob(code)
    log_n = math.log(n)
    assert torch.allclose(parts["index_code_mi"], log_q_given_x - log_q + log_n)
    assert torch.allclose(parts["total_correlation"], log_q - log_marginals + (dims - 1) * log_n)
    assert torch.allclose(parts["dimension_kl"], log_marginals - log_prior - dims * log_n)


def test_identical_posteriors_give_the_estimators_known_offsets():
    """Every image with the same posterior: no information, no total correlation (a diagonal
    Gaussian's dimensions are independent). MWS, with N images of which M are in the batch,
    gives log N and (D − 1)·log N, whatever the batch size."""
    dims, dataset_size = 4, 60_000
    for batch in (2, 20, 200):
        mean = torch.randn(1, dims, dtype=torch.float64).expand(batch, dims)
        log_scale = torch.full((batch, dims), -0.5, dtype=torch.float64)
        code = mean + log_scale.exp() * torch.randn(batch, dims, dtype=torch.float64)
        parts = kl_decomposition(code, mean, log_scale, torch.tensor(dataset_size))
        assert torch.allclose(parts["index_code_mi"], torch.tensor(math.log(dataset_size), dtype=torch.float64))
        assert torch.allclose(parts["total_correlation"],
                              torch.tensor((dims - 1) * math.log(dataset_size), dtype=torch.float64))


def test_the_parts_add_up_to_the_one_sample_kl():
    torch.manual_seed(1)
    mean, log_scale = torch.randn(10, 5), 0.3 * torch.randn(10, 5)
    code = mean + log_scale.exp() * torch.randn(10, 5)
    parts = kl_decomposition(code, mean, log_scale, torch.tensor(1000))
    one_sample_kl = (Independent(Normal(mean, log_scale.exp()), 1).log_prob(code)
                     - Independent(Normal(torch.zeros_like(code), 1.0), 1).log_prob(code))
    assert torch.allclose(sum(parts.values()), one_sample_kl, atol=1e-4)


def tcvae(tc_weight, dataset_size=96):
    torch.manual_seed(0)
    return models.build(tiny_config("model.kind=tcvae", f"model.tc_weight={tc_weight}"), dataset_size=dataset_size)


def test_the_loss_weights_the_total_correlation_and_reports_the_elbo_beside_it():
    x, noise = torch.rand(8, 1, 28, 28), torch.randn(8, tcvae(6.0).latent_dim)
    plain, weighted = tcvae(1.0).objective(x, noise), tcvae(6.0).objective(x, noise)
    terms = plain.terms
    assert torch.allclose(plain.loss, terms["recon"] + terms["index_code_mi"] + terms["total_correlation"]
                          + terms["dimension_kl"])
    assert torch.allclose(weighted.loss - plain.loss, 5 * terms["total_correlation"], atol=1e-4)
    assert torch.equal(terms["neg_elbo"], terms["recon"] + terms["kl"])  # the closed-form KL, as the VAE's


def test_the_dataset_size_travels_with_the_weights():
    trained = tcvae(6.0, dataset_size=60_000)
    loaded = tcvae(6.0, dataset_size=None)
    loaded.load_state_dict(trained.state_dict())
    assert int(loaded.dataset_size) == 60_000
    x, noise = torch.rand(8, 1, 28, 28), torch.randn(8, tcvae(6.0).latent_dim)
    assert torch.equal(trained.objective(x, noise).loss, loaded.objective(x, noise).loss)


def test_the_total_correlation_is_in_the_metrics_and_the_epoch_line(tmp_path):
    trainer = trainer_for(tmp_path, "model.kind=tcvae", "train.epochs=1")
    train_epochs(trainer)
    record = runs.read_metrics(tmp_path / "run")[-1]
    assert math.isfinite(record["train_total_correlation"]) and math.isfinite(record["test_total_correlation"])
    assert f"TC {record['train_total_correlation']:.2f}" in training.epoch_line(record, 1, trainer.model)


def test_a_negative_weight_is_refused():
    with pytest.raises(ConfigError, match="tc_weight"):
        tcvae(-1.0)
