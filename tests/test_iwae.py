"""The importance-weighted bound (Burda et al. 2016): its formula, k=1 is the VAE's ELBO, and
more samples tighten it towards the log-likelihood."""

import math

import torch

from conftest import TINY_MOONS
from vae_cli import config, evaluation, models, runs
from vae_cli.objectives import log_normal

NETWORK = ["model.hidden=[16]", "model.latent_dim=3"]


def vae_and_iwae(k: int):
    """A VAE and an IWAE with the same weights."""
    torch.manual_seed(0)
    vae = models.build(config.load(None, NETWORK)).double()
    iwae = models.build(config.load(None, [*NETWORK, "model.kind=iwae", f"model.k={k}"])).double()
    iwae.load_state_dict(vae.state_dict())
    return vae, iwae


@torch.no_grad()
def test_the_bound_is_the_log_mean_of_the_importance_weights():
    _, iwae = vae_and_iwae(4)
    x, noise = torch.rand(2, 1, 28, 28, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    loss = iwae.objective(x, noise).loss
    mean, log_scale = iwae.encode(x)
    for i in range(2):
        weights = []
        for j in range(4):
            z = mean[i] + log_scale[i].exp() * noise[i, j]
            log_p_x = -iwae.likelihood.nll(iwae.decode(z[None]), x[i:i + 1])[0]
            weights.append(math.exp(log_p_x + log_normal(z, torch.zeros(3), torch.zeros(3))
                                    - log_normal(z, mean[i], log_scale[i])))
        assert math.isclose(float(loss[i]), -math.log(sum(weights) / 4), rel_tol=1e-10)


def test_k_1_is_the_vae_elbo():
    vae, iwae = vae_and_iwae(1)
    x = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    noise = torch.randn(1, 3, dtype=torch.float64)
    # One sample: the same reconstruction term as the VAE with the same noise, and the one-sample
    # ELBO estimate (recon + log q − log p) as the loss.
    a, b = vae.objective(x, noise), iwae.objective(x, noise[:, None])
    assert torch.allclose(a.terms["recon"], b.terms["recon"], rtol=1e-12)
    assert torch.allclose(a.terms["kl"], b.terms["kl"], rtol=1e-12)
    mean, log_scale = vae.encode(x)
    z = mean + log_scale.exp() * noise
    kl_estimate = log_normal(z, mean, log_scale) - log_normal(z, torch.zeros(3), torch.zeros(3))
    assert torch.allclose(b.loss, a.terms["recon"] + kl_estimate, rtol=1e-12)
    # Its expectation is the VAE's -ELBO (analytic KL) to rounding: averaged over many draws.
    draws = 20000
    noise = torch.randn(draws, 1, 3, dtype=torch.float64)
    with torch.no_grad():
        losses = iwae.objective(x.expand(draws, -1, -1, -1), noise).loss
        elbo = vae.objective(x.expand(draws, -1, -1, -1), noise[:, 0])
    neg_elbo = float((elbo.terms["recon"] + elbo.terms["kl"]).mean())
    standard_error = float(losses.std()) / math.sqrt(draws)
    assert abs(float(losses.mean()) - neg_elbo) < 4 * standard_error, (float(losses.mean()), neg_elbo, standard_error)


def test_more_samples_tighten_the_bound_towards_the_nll():
    torch.manual_seed(1)
    x = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    bounds = {}
    with torch.no_grad():
        for k in (1, 5, 50):
            _, iwae = vae_and_iwae(k)
            bounds[k] = float(iwae.objective(x.expand(2000, -1, -1, -1)).loss.mean())
        nll = float(evaluation.iwae_nll(evaluation.log_weights(iwae, x.float().double(), 20000)[0]))
    assert bounds[1] > bounds[5] > bounds[50] > nll - 0.01, (bounds, nll)


def test_train_and_eval_an_iwae(vae, runs_dir):
    args = [a for o in (*TINY_MOONS, "train.epochs=1", "model.kind=iwae", "model.k=3") for a in ("--set", o)]
    result = vae("train", *args, "--name", "iwae")
    assert result.exit_code == 0, result.output
    assert "-IWAE bound (k=3)" in result.output and "-ELBO" in result.output
    record = runs.read_metrics(runs_dir / "iwae")[0]
    assert record["test_loss"] < record["test_neg_elbo"]  # tighter than the ELBO
    result = vae("eval", "--k", 20)
    assert result.exit_code == 0, result.output
    assert "NLL, k=20" in result.output
