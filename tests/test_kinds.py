"""The contract every registered model kind keeps (vae_cli/models.py KINDS), tested for each kind
and its conditional variant without naming them: a kind added to the registry is tested here."""

import dataclasses

import pytest
import torch

from vae_cli import config, evaluation, models, resources, runs, training

from trainer_steps import StopAfter, tiny_config, train_epochs, trainer_for

KINDS = list(models.KINDS)
VARIANTS = [(kind, False) for kind in KINDS] + [(k, True) for k in KINDS if models.KINDS[k].conditional_model]
CLASSES = ["even", "odd"]


def variant_config(kind, conditional):
    extra = ["model.conditional=true", "data.name=folder", "data.path=unused"] if conditional else []
    return tiny_config(f"model.kind={kind}", *extra)


def build(kind, conditional, seed=0):
    torch.manual_seed(seed)
    return models.build(variant_config(kind, conditional), CLASSES if conditional else None, dataset_size=96)


def batch(n=12, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=generator)
    return x, torch.arange(n) % len(CLASSES)


def prepared(kind, conditional, seed=0):
    """A model of the kind ready to use: fitted where the kind is fitted once, with its weights
    and buffers moved off their initial values (so a round trip cannot pass on defaults)."""
    model = build(kind, conditional, seed)
    x, labels = batch(64, seed=2)
    if model.fitted_once:
        model.fit(x)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn_like(tensor))
    return model, (labels if conditional else None)


@pytest.mark.parametrize("kind, conditional", VARIANTS)
def test_the_objective_is_finite_and_trains_every_parameter(kind, conditional):
    model, _ = prepared(kind, conditional)
    x, labels = batch()
    labels = labels if conditional else None
    objective = model.objective(x, model.training_noise(len(x), "cpu"), labels)
    assert objective.loss.shape == (len(x),) and torch.isfinite(objective.loss).all()
    assert set(objective.terms) == set(model.term_names)
    assert all(torch.isfinite(v).all() and v.shape == (len(x),) for v in objective.terms.values())
    parameters = list(model.parameters())
    assert parameters or model.fitted_once
    if parameters:
        objective.loss.mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
        assert any(p.grad.abs().sum() > 0 for p in parameters)


@pytest.mark.parametrize("kind, conditional", VARIANTS)
def test_a_checkpoint_brings_back_the_same_model(kind, conditional, tmp_path):
    model, labels = prepared(kind, conditional)
    cfg = variant_config(kind, conditional)
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True)
    runs.save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(),
                          "classes": CLASSES if conditional else None}, path)
    loaded_config, loaded, _ = runs.load_model(tmp_path / "run")
    assert loaded_config == cfg and type(loaded) is type(model)
    state, again = model.state_dict(), loaded.state_dict()
    assert list(state) == list(again) and all(torch.equal(state[k], again[k]) for k in state)
    x, _ = batch()
    model.eval()
    assert torch.equal(model.reconstruct(x, labels[:len(x)] if conditional else None),
                       loaded.reconstruct(x, labels[:len(x)] if conditional else None))


@pytest.mark.parametrize("kind, conditional", VARIANTS)
def test_random_codes_decode_to_images(kind, conditional):
    model, _ = prepared(kind, conditional)
    model.eval()
    codes = model.sample_codes(10, torch.Generator().manual_seed(0))
    again = model.sample_codes(10, torch.Generator().manual_seed(0))
    assert codes.shape == (10, model.latent_dim) and torch.equal(codes, again)
    images = model.decode_image(codes, model.sample_labels(10))
    assert images.shape == (10, *model.shape) and 0 <= images.min() and images.max() <= 1


@pytest.mark.parametrize("kind, conditional", [v for v in VARIANTS if models.KINDS[v[0]].options.has_density])
def test_the_importance_weighted_nll_is_no_worse_than_the_elbo(kind, conditional):
    model, labels = prepared(kind, conditional)
    model.eval()
    x, _ = batch(20, seed=3)
    torch.manual_seed(0)
    report = evaluation.evaluate(model, x, k=64, batch_size=10, labels=labels[:20] if conditional else None)
    # log of a mean of weights >= mean of their logs, for every image and sample set
    assert report["nll"] <= report["neg_elbo"]
    assert report["neg_elbo"] == pytest.approx(report["recon"] + report["kl"])
    # the KL is measured against the model's own prior (the objective's, averaged over 200 draws
    # per image: where the KL has no closed form, the objective estimates it from one, and both
    # estimates of a KL near 0.1 nats differ by a few hundredths)
    draws = 200
    with torch.no_grad():
        model_kl = model.objective(x.repeat(draws, 1, 1, 1),
                                   labels=labels[:20].repeat(draws) if conditional else None).terms["kl"].mean()
    assert report["kl"] == pytest.approx(float(model_kl), rel=0.2, abs=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_the_memory_estimate_counts_the_models_weights(kind):
    cfg = tiny_config(f"model.kind={kind}")
    estimate = resources.estimate(cfg)
    parameters = sum(p.numel() for p in models.build(cfg).parameters())
    assert estimate["model"] == 4 * parameters * resources.BYTES_PER_VALUE
    assert all(value >= 0 for value in estimate.values()) and estimate["data"] > 0
    assert estimate["activations"] > 0 or not parameters


@pytest.mark.parametrize("kind", [k for k in KINDS if not models.KINDS[k].options.fitted_once])
def test_training_resumed_mid_epoch_ends_bit_for_bit_where_it_would_have(kind, tmp_path):
    settings = (f"model.kind={kind}", "train.epochs=2")
    straight = trainer_for(tmp_path, *settings, name="straight")
    train_epochs(straight)
    cut = trainer_for(tmp_path, *settings, name="cut")
    with pytest.raises(training.TrainingInterrupted):
        train_epochs(cut, StopAfter(cut, 6 + 2))  # epoch 2 of 2, step 2 of 6
    resumed = trainer_for(tmp_path, *settings, name="cut")
    resumed.restore(runs.load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt"))
    train_epochs(resumed)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_kinds_options_are_the_model_keys_it_reads_and_lists():
    """What the config accepts for a kind and `vae keys --kind` lists is its options class."""
    for name, kind in models.KINDS.items():
        declared = {f.name for f in dataclasses.fields(kind.options)}
        # likelihood=gaussian, so that the likelihood's own options are read where the kind has them
        section = config.ModelConfig(kind=name, likelihood="gaussian")
        read = {f.name for f in dataclasses.fields(section) if section.applies(f.name)} - {"kind"}
        assert read == declared, name
        listed = {row[0] for row in config.describe_keys(name) if row[0].startswith("model.")}
        assert listed == {f"model.{key}" for key in declared | {"kind"}}, name


@pytest.mark.parametrize("kind, conditional", VARIANTS)
def test_vae_evals_report_names_what_the_kind_defines(kind, conditional):
    from vae_cli import threads
    model, labels = prepared(kind, conditional)
    model.eval()
    x, _ = batch(10, seed=4)
    report = evaluation.run_report(model, variant_config(kind, conditional), x, labels[:10] if conditional else None,
                                   k=8, batch_size=5, seed=0, threads=threads.for_setting(1, torch.device("cpu")))
    assert report["kind"] == kind and report["squared_error"] > 0
    assert ("nll" in report) == model.defines_density == ("note" not in report)
