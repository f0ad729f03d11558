"""Models own their objective: each reports the loss to minimise and its named terms, and what
differs between kinds is a class property the rest of the tool reads."""

import math

import torch
from rich.progress import Progress

from conftest import TINY_MOONS
from vae_cli import config, data, evaluation, models, runs, training
from vae_cli.objectives import kl_to_standard_normal


def build(*overrides):
    return models.build(config.load(None, ["model.hidden=[32]", *overrides]))


def test_the_vae_objective_is_recon_plus_beta_kl_and_reports_the_real_elbo_beside_it():
    torch.manual_seed(0)
    model = build("model.beta=4")
    x, noise = torch.rand(5, 1, 28, 28), torch.randn(5, model.latent_dim)
    objective = model.objective(x, noise)
    mean, log_scale = model.encode(x)
    recon = model.likelihood.nll(model.decode(mean + log_scale.exp() * noise), x)
    kl = kl_to_standard_normal(mean, log_scale).sum(1)
    assert torch.allclose(objective.terms["recon"], recon) and torch.allclose(objective.terms["kl"], kl)
    assert torch.allclose(objective.loss, recon + 4 * kl)
    assert torch.allclose(objective.terms["neg_elbo"], recon + kl)
    assert model.term_names == tuple(objective.terms) and model.loss_name == "loss (beta=4)"
    assert "neg_elbo" not in build().objective(x, noise).terms and build().loss_name == "-ELBO"


def test_kinds_differ_by_class_properties():
    vae, ae, pca = build(), build("model.kind=ae"), models.build(config.load(None, ["model.kind=pca"]))
    assert (vae.defines_density, ae.defines_density, pca.defines_density) == (True, False, False)
    assert (vae.fitted_once, ae.fitted_once, pca.fitted_once) == (False, False, True)
    assert not any(m.conditional for m in (vae, ae, pca))
    assert vae.training_noise(3, "cpu").shape == (3, vae.latent_dim) and ae.training_noise(3, "cpu") is None
    # A VAE samples from its prior N(0, I) and carries no measured spread; the others measure one.
    assert not any("code_" in name for name in vae.state_dict())
    assert {"prior.code_mean", "prior.code_std"} <= set(ae.state_dict())
    noise = torch.randn(3, 4)
    assert torch.equal(vae.codes_from_normal(noise), noise)


def test_reconstruct_decodes_the_code_means():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    for model in (build(), build("model.kind=ae")):
        assert torch.equal(model.reconstruct(x), model.decode_image(model.encode(x)[0]))


def test_evaluation_averages_whatever_the_model_reports():
    torch.manual_seed(0)
    x = torch.rand(30, 1, 28, 28)
    for model, batch_size in ((build("model.beta=0.5"), 30), (build("model.kind=ae"), 7)):
        torch.manual_seed(1)
        averages = evaluation.average_objective(model, x, batch_size=batch_size)
        torch.manual_seed(1)
        with torch.no_grad():
            direct = model.objective(x)  # the same noise: one draw per image, in the same order
        reported = {"loss": direct.loss, **direct.terms, **direct.stats}
        assert set(averages) == set(reported)
        for name, values in reported.items():
            assert math.isclose(averages[name], float(values.double().mean()), rel_tol=1e-5)
    assert set(averages) == {"loss", "recon"}


def test_the_trainer_trains_the_model_and_data_it_is_given(tmp_path):
    """No config-built data: a handful of images made here, and a model with a wider code."""
    cfg = config.load(None, ["model.hidden=[16]", "model.latent_dim=3", "train.batch_size=8", "train.epochs=1"])
    torch.manual_seed(0)
    images = torch.rand(24, 1, 28, 28)
    own = data.ImageData(images[:16], torch.zeros(16), images[16:], torch.zeros(8))
    model = models.build(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / "checkpoints").mkdir()
    trainer = training.Trainer(model, own, cfg, tmp_path, torch.device("cpu"))
    with training.StopRequests() as stop, Progress(disable=True) as progress:
        trainer.run_epoch(progress, stop)
        record = trainer.end_epoch(0.0, 1.0)
    assert trainer.steps_per_epoch == 2
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(record) >= {"train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl",
                           "test_mean_log_scale"}
    assert math.isclose(record["train_loss"], record["train_recon"] + record["train_kl"], rel_tol=1e-6)


def test_training_with_beta_shows_and_logs_the_real_elbo(vae, runs_dir):
    args = [a for o in (*TINY_MOONS, "train.epochs=1", "model.beta=4") for a in ("--set", o)]
    result = vae("train", *args, "--name", "beta")
    assert result.exit_code == 0, result.output
    assert "loss (beta=4)" in result.output and "-ELBO" in result.output
    record = runs.read_metrics(runs_dir / "beta")[0]
    assert math.isclose(record["test_neg_elbo"], record["test_recon"] + record["test_kl"], rel_tol=1e-6)
    assert math.isclose(record["test_loss"], record["test_recon"] + 4 * record["test_kl"], rel_tol=1e-6)
