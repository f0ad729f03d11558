"""Training options: activation, Adam's eps, learning-rate schedules, KL warm-up, free bits and
gradient clipping; each checked against its definition, and all resumed exactly."""

import math

import pytest
import torch
from torch import nn

from vae_cli import config, data, models, networks, runs, training
from vae_cli.kinds.vae import free_bits_kl

from trainer_steps import StopAfter, train_epochs, trainer_for


@pytest.mark.parametrize("name", ["relu", "tanh", "elu", "silu"])
def test_activation_sits_between_the_layers_and_keeps_the_weight_names(name):
    model = models.build(config.load(None, ["model.hidden=[32, 16]", f"model.activation={name}"]))
    relu = models.build(config.load(None, ["model.hidden=[32, 16]"]))
    assert list(model.state_dict()) == list(relu.state_dict())  # old checkpoints load either way
    activations = [m for m in model.modules() if isinstance(m, networks.ACTIVATIONS[name])]
    assert len(activations) == 4  # two between the encoder's three layers, two in the decoder
    conv = models.build(config.load(None, ["model.network=conv", "model.hidden=[8]", f"model.activation={name}"]))
    assert sum(isinstance(m, networks.ACTIVATIONS[name]) for m in conv.modules()) == 2


def test_learning_rate_schedules_follow_their_formulas():
    train = config.load(None, ["train.epochs=10", "train.lr_step_epochs=3", "train.lr_gamma=0.5"]).train
    cosine, step = training.LR_SCHEDULES["cosine"], training.LR_SCHEDULES["step"]
    assert cosine(0, train) == 1.0 and math.isclose(cosine(5, train), 0.5) and math.isclose(cosine(10, train), 0)
    assert [step(e, train) for e in (0, 2.9, 3, 5.5, 6, 8.9, 9)] == [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert training.LR_SCHEDULES["constant"](7.3, train) == 1.0


def test_the_trainer_sets_the_scheduled_rate_and_adam_eps(tmp_path):
    trainer = trainer_for(tmp_path, "train.epochs=4", "train.lr_schedule=step", "train.lr_step_epochs=1",
                          "train.lr_gamma=0.5", "train.adam_eps=1e-4")
    trainer.config.train.epochs = 3
    train_epochs(trainer)
    group = trainer.optimizer.param_groups[0]
    assert group["eps"] == 1e-4
    assert group["lr"] == 1e-3 * 0.25  # the last step was in epoch 3


def test_kl_warmup_raises_the_weight_linearly_and_evaluation_ignores_it():
    torch.manual_seed(0)
    model = models.build(config.load(None, ["model.hidden=[16]", "model.beta=2", "model.kl_warmup_epochs=4"]))
    x, noise = torch.rand(6, 1, 28, 28), torch.randn(6, model.latent_dim)
    for epochs_done, weight in ((0, 0.0), (1, 0.5), (3, 1.5), (4, 2.0), (9, 2.0)):
        model.at_epoch(epochs_done)
        objective = model.objective(x, noise)
        assert torch.allclose(objective.loss, objective.terms["recon"] + weight * objective.terms["kl"])
    model.at_epoch(1)
    model.eval()
    objective = model.objective(x, noise)
    assert torch.allclose(objective.loss, objective.terms["recon"] + 2 * objective.terms["kl"])
    assert torch.allclose(objective.terms["neg_elbo"], objective.terms["recon"] + objective.terms["kl"])


@pytest.mark.parametrize("warmup, schedule", [
    (0, ((0, 0.0), (0.99, 0.0), (1.5, 2.0), (5, 2.0))),
    (2, ((0, 0.0), (1.5, 0.0), (2.5, 1.0), (3, 1.5), (3.5, 2.0), (9, 2.0))),
])
def test_kl_warmup_delay_holds_the_weight_at_zero_then_warms_up(warmup, schedule):
    model = models.build(config.load(None, ["model.hidden=[16]", "model.beta=2", "model.kl_warmup_delay=1.5",
                                            f"model.kl_warmup_epochs={warmup}"]))
    assert model.loss_name != "-ELBO" and models.options_of(
        config.load(None, ["model.kl_warmup_delay=1.5"]).model).objective_changes_over_training
    for epochs_done, weight in schedule:
        model.at_epoch(epochs_done)
        assert model.kl_weight == pytest.approx(weight), epochs_done


def test_free_bits_hold_each_dimensions_batch_average_kl_at_the_floor():
    torch.manual_seed(0)
    kl_per_dim = (torch.rand(8, 3) * torch.tensor([0.1, 2.0, 3.0])).requires_grad_()
    floor = 0.5
    held = free_bits_kl(kl_per_dim, floor)
    expected = 8 * kl_per_dim.mean(0).clamp_min(floor).sum()
    assert torch.isclose(held.sum(), expected)
    (gradient,) = torch.autograd.grad(held.sum(), kl_per_dim)
    below = kl_per_dim.mean(0) < floor
    assert below.tolist() == [True, False, False]
    assert torch.allclose(gradient[:, below], torch.zeros(1)) and torch.allclose(gradient[:, ~below], torch.ones(1))
    assert torch.allclose(free_bits_kl(kl_per_dim, 0.0), kl_per_dim.sum(1))


def test_gradient_clipping_caps_the_global_norm(tmp_path):
    trainer = trainer_for(tmp_path, "train.clip_grad_norm=0.01")
    trainer.train_step(torch.arange(16))
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert math.isclose(float(norm), 0.01, rel_tol=1e-4)
    unclipped = trainer_for(tmp_path, name="plain")
    unclipped.train_step(torch.arange(16))
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in unclipped.model.parameters()])) > 1


ALL_OPTIONS = ["train.epochs=3", "model.activation=elu", "train.adam_eps=1e-5", "train.lr_schedule=cosine",
               "model.kl_warmup_epochs=1.5", "model.free_bits=0.1", "train.clip_grad_norm=5",
               "train.threads=1"]  # bit for bit needs a fixed thread count (docs/speed.md)


def test_every_option_resumes_mid_epoch_bit_for_bit(tmp_path):
    straight = trainer_for(tmp_path, *ALL_OPTIONS, name="straight")
    train_epochs(straight)

    cut = trainer_for(tmp_path, *ALL_OPTIONS, name="cut")
    with pytest.raises(training.TrainingInterrupted):
        train_epochs(cut, StopAfter(cut, 6 + 3))  # epoch 2 of 3, step 3 of 6
    checkpoint = runs.load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 3)
    resumed = trainer_for(tmp_path, *ALL_OPTIONS, name="cut")
    resumed.restore(checkpoint)
    train_epochs(resumed)

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda metrics: [{k: v for k, v in m.items() if k not in ("seconds", "images_per_s")} for m in metrics]
    assert strip(runs.read_metrics(tmp_path / "straight")) == strip(runs.read_metrics(tmp_path / "cut"))
    # The options were in force: the model trained with them differs from one trained without.
    plain = trainer_for(tmp_path, "train.epochs=3", name="plain")
    train_epochs(plain)
    assert not torch.equal(plain.model.state_dict()["decoder.0.0.weight"], a["decoder.0.0.weight"])
