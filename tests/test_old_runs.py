"""Run folders written before models owned their objective still load: their checkpoints carry
every model key in the config and a code spread at the top of every model's weights (a VAE's
unused). The layout below is what that code saved, read back from a real checkpoint."""

import json

import pytest
import torch

from vae_cli import runs

OLD_CONFIG = {
    "data": {"name": "moons", "root": None, "path": None, "image_size": 28, "channels": 1,
             "binarize": "none", "train_size": 512, "test_size": 128, "test_fraction": 0.1},
    "model": {"kind": "vae", "network": "mlp", "hidden": [64], "latent_dim": 4, "likelihood": "bernoulli",
              "gaussian_scale": 0.1, "learn_scale": False, "beta": 1.0},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.001, "seed": 0, "device": "auto", "precision": "fp32",
              "compile": False, "threads": 0},
}
OLD_WEIGHTS = {  # name: shape, in the order the old state dict listed them (kind vae; ae has 4 code outputs)
    "code_mean": (4,), "code_std": (4,),
    "encoder.1.0.weight": (64, 784), "encoder.1.0.bias": (64,),
    "encoder.1.2.weight": (8, 64), "encoder.1.2.bias": (8,),
    "decoder.0.0.weight": (64, 4), "decoder.0.0.bias": (64,),
    "decoder.0.2.weight": (784, 64), "decoder.0.2.bias": (784,),
}


def old_checkpoint(kind: str) -> dict:
    generator = torch.Generator().manual_seed(0)
    weights = {}
    for name, shape in OLD_WEIGHTS.items():
        if kind == "ae" and name.startswith("encoder.1.2"):
            shape = (4, *shape[1:])
        weights[name] = 0.05 * torch.randn(shape, generator=generator)
    weights["code_std"] = torch.rand(4, generator=generator) + 0.5
    config = json.loads(json.dumps(OLD_CONFIG))
    config["model"]["kind"] = kind
    return {"format": "vae-cli/1", "config": config, "model": weights, "optimizer": {"state": {}, "param_groups": []},
            "scaler": {}, "epoch": 2, "step": 0, "best_loss": 114.7,
            "totals": torch.zeros(3, dtype=torch.float64), "rng": {"torch": torch.get_rng_state()}}


@pytest.fixture(params=["vae", "ae"])
def old_run(request, runs_dir):
    run_dir = runs_dir / f"old-{request.param}"
    (run_dir / "checkpoints").mkdir(parents=True)
    checkpoint = old_checkpoint(request.param)
    for which in ("best", "last"):
        torch.save(checkpoint, run_dir / "checkpoints" / f"{which}.pt")
    return run_dir, checkpoint


def test_an_old_run_loads_with_its_weights(old_run):
    run_dir, checkpoint = old_run
    config, model, _ = runs.load_model(run_dir)
    assert config.train.threads == 0  # still one thread per core, fixed: not the new default, auto
    state = model.state_dict()
    for name, value in checkpoint["model"].items():
        if name in ("code_mean", "code_std"):
            if config.model.kind == "ae":  # the autoencoder samples from this spread: it moved, kept
                assert torch.equal(state[f"prior.{name}"], value)
            continue
        assert torch.equal(state[name], value)
    assert not any(name.endswith(("code_mean", "code_std")) for name in state) or config.model.kind == "ae"


def test_an_old_run_samples_and_evaluates_through_the_cli(vae, old_run):
    run_dir, _ = old_run
    result = vae("sample", "--run", run_dir, "--n", 4)
    assert result.exit_code == 0, result.output
    assert (run_dir / "sample_n4_seed0_t1.png").is_file()
    result = vae("eval", "--run", run_dir, "--k", 3)
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["squared_error"] > 0
    assert ("nll" in report) == (run_dir.name == "old-vae")


def test_an_old_run_that_stored_data_keys_its_dataset_ignores_still_loads(runs_dir):
    """Data keys the dataset does not read are refused in new configs; older runs stored them
    all, with values that did nothing (here a folder run's moons train_size)."""
    run_dir = runs_dir / "old-folder"
    (run_dir / "checkpoints").mkdir(parents=True)
    checkpoint = old_checkpoint("vae")
    checkpoint["config"]["data"] |= {"name": "folder", "path": "pictures"}
    torch.save(checkpoint, run_dir / "checkpoints" / "best.pt")
    (run_dir / "config.yaml").write_text(json.dumps(checkpoint["config"]))  # JSON is YAML
    config, model, _ = runs.load_model(run_dir)
    assert (config.data.name, config.data.train_size) == ("folder", 8192)  # the unread 512 is dropped
    assert runs.summary(run_dir)["dataset"] == "folder"
    with pytest.raises(runs.ConfigError, match="data.train_size does nothing for data.name=folder"):
        runs.config_module.from_dict(checkpoint["config"], "a new config")
