"""The Gaussian mixture sampler: EM's maths on known mixtures, and `vae sample --sampler gmm`
(sampling.sample chooses the sampler)."""

import pytest
import torch
from PIL import Image

from conftest import TINY_MOONS
from vae_cli import runs, samplers, sampling
from vae_cli.errors import UsageError
from vae_cli.samplers import GaussianMixture, fit_gmm


def known_mixture() -> GaussianMixture:
    """Three 2-D components of different sizes, shapes and tilts, well apart."""
    covariances = torch.tensor([[[1.0, 0.8], [0.8, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[2.0, -0.5], [-0.5, 0.3]]])
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
                           torch.tensor([[0.0, 0.0], [6.0, 1.0], [-3.0, 7.0]], dtype=torch.float64),
                           covariances.double())


def matched(fitted: GaussianMixture, truth: GaussianMixture) -> list[int]:
    """For each true component, the fitted component with the nearest mean."""
    return torch.cdist(truth.means, fitted.means).argmin(1).tolist()


def test_log_prob_is_the_mixture_density():
    mixture = known_mixture()
    codes = torch.randn(50, 2, dtype=torch.float64) * 3
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(mixture.weights),
        torch.distributions.MultivariateNormal(mixture.means, mixture.covariances))
    assert torch.allclose(mixture.log_prob(codes), reference.log_prob(codes), atol=1e-9)


def test_em_recovers_a_known_mixture():
    truth = known_mixture()
    codes = truth.sample_codes(6000, torch.Generator().manual_seed(0))
    fitted, _ = fit_gmm(codes, components=3, seed=0)
    order = matched(fitted, truth)
    assert sorted(order) == [0, 1, 2]  # one fitted component per true one
    assert torch.allclose(fitted.weights[order], truth.weights, atol=0.02)
    assert torch.allclose(fitted.means[order], truth.means, atol=0.1)
    assert torch.allclose(fitted.covariances[order], truth.covariances, atol=0.15)


def test_em_log_likelihood_never_decreases_and_reaches_the_truths():
    truth = known_mixture()
    codes = truth.sample_codes(3000, torch.Generator().manual_seed(1))
    # More components than the data has: EM must still climb at every step.
    _, history = fit_gmm(codes, components=6, seed=3, tolerance=0.0, max_iterations=60)
    steps = torch.tensor(history).diff()
    assert len(history) == 60 and (steps >= -1e-9).all(), steps.min()
    assert history[-1] > history[0]
    assert history[-1] >= float(truth.log_prob(codes).mean()) - 0.01  # the maximum is at least as high


def test_samples_follow_the_mixture():
    mixture = known_mixture()
    codes = mixture.sample_codes(20000, torch.Generator().manual_seed(2)).double()
    # The components are far apart, so the most responsible one is the one each code came from.
    component = mixture.component_log_probs(codes).argmax(1)
    shares = torch.bincount(component, minlength=3).double() / len(codes)
    assert torch.allclose(shares, mixture.weights, atol=0.015)
    for k in range(3):
        own = codes[component == k]
        assert torch.allclose(own.mean(0), mixture.means[k], atol=0.06)
        assert torch.allclose(own.T.cov(), mixture.covariances[k], atol=0.1)
    at_zero = mixture.sample_codes(100, torch.Generator().manual_seed(2), temperature=0.0).double()
    assert all((at_zero[i] == mixture.means).all(1).any() for i in range(100))  # temperature 0: the means


def test_sample_with_the_gmm_sampler(vae, runs_dir):
    args = [a for o in (*TINY_MOONS, "model.kind=ae", "train.epochs=1") for a in ("--set", o)]
    result = vae("train", *args, "--name", "ae")
    assert result.exit_code == 0, result.output
    # A small training set: training fits the mixture for the best checkpoint and stores it.
    assert "fitted a 10-component Gaussian mixture to 512 training codes" in result.output
    stored_path = runs_dir / "ae" / "sampler_gmm_best.pt"
    stored = torch.load(stored_path, weights_only=True)
    # Reproducible from the run folder: the run's seed and the training codes give the same mixture.
    config, model, _ = runs.load_model(runs_dir / "ae")
    from vae_cli import data
    again, _ = fit_gmm(samplers.training_codes(model, data.load(config.data)), seed=stored["seed"])
    assert stored["seed"] == config.train.seed
    assert torch.allclose(again.means, stored["means"]) and torch.allclose(again.covariances, stored["covariances"])

    result = vae("sample", "--n", 16, "--sampler", "gmm")  # read back, not fitted again
    assert result.exit_code == 0 and "fitted" not in result.output
    picture = runs_dir / "ae" / "sample_n16_seed0_t1_gmm.png"
    first = picture.read_bytes()
    stored_path.unlink()
    result = vae("sample", "--n", 16, "--sampler", "gmm")  # fitted again: the same mixture, the same picture
    assert result.exit_code == 0 and "fitted a 10-component" in result.output
    assert picture.read_bytes() == first

    result = vae("sample", "--sampler", "kde")
    assert result.exit_code == 2 and "--sampler 'kde': use one of auto, prior, gmm" in result.output


def test_the_default_sampler_uses_the_runs_mixture_where_it_has_one(vae, runs_dir, capsys):
    args = [a for o in (*TINY_MOONS, "train.epochs=1") for a in ("--set", o)]
    assert vae("train", *args, "--name", "vae").exit_code == 0
    pictures = {}
    for sampler in ("auto", "gmm", "prior"):
        sampled = sampling.sample(None, 16, 1.0, 0, sampler=sampler, device="cpu")
        suffix = "" if sampler == "auto" else f"_{sampler}"
        assert sampled.grid == runs_dir / "vae" / f"sample_n16_seed0_t1{suffix}.png" and sampled.folder is None
        assert sampled.source == ("the run's Gaussian mixture" if sampler == "auto" else None)
        pictures[sampler] = sampled.grid.read_bytes()
    assert "codes from the run's Gaussian mixture (--sampler prior or gmm to choose)" in capsys.readouterr().out
    assert pictures["auto"] == pictures["gmm"] != pictures["prior"]
    # A run without a stored mixture (trained before, or on a large training set) samples the prior.
    (runs_dir / "vae" / "sampler_gmm_best.pt").unlink()
    sampled = sampling.sample(None, 16, 1.0, 0, device="cpu")
    assert sampled.source == "the prior" and sampled.grid.read_bytes() == pictures["prior"]
    assert "codes from the prior" in capsys.readouterr().out


def test_an_unknown_sampler_is_refused_before_anything_loads(runs_dir):
    with pytest.raises(UsageError, match="--sampler 'kde': use one of auto, prior, gmm"):
        sampling.sample(None, 16, 1.0, 0, sampler="kde")  # no run exists: the name is checked first


def test_a_mixture_fits_codes_with_fewer_distinct_values_than_components():
    # A tiny training set (a test folder of a few images) can give a handful of equal codes.
    codes = torch.tensor([[0.0, 1.0]] * 6 + [[2.0, -1.0]] * 6)
    mixture, history = fit_gmm(codes, components=10, seed=0)
    assert all(torch.isfinite(t).all() for t in (mixture.weights, mixture.means, mixture.covariances)) and history
    assert torch.isfinite(mixture.log_prob(codes)).all()
