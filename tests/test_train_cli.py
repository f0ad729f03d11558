import json
from pathlib import Path

import torch
from PIL import Image

from conftest import TINY_MOONS
from vae_cli import runs
from vae_cli.config import all_keys

CONFIGS = Path(__file__).parents[1] / "configs"


def set_args(*overrides):
    return [arg for o in (*TINY_MOONS, *overrides) for arg in ("--set", o)]


def test_train_then_sample_on_moons(vae, runs_dir):
    result = vae("train", *set_args("train.epochs=3"), "--name", "tiny")
    assert result.exit_code == 0, result.output
    run = runs_dir / "tiny"
    assert (runs_dir / "latest").read_text().strip() == "tiny"
    for name in ["config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "reconstructions_001.png", "reconstructions_003.png", "samples_003.png"]:
        assert (run / name).is_file(), name
    metrics = runs.read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["test_loss"] < metrics[0]["test_loss"]
    assert "test -ELBO" in result.output

    result = vae("sample", "--n", 10, "--seed", 3)
    assert result.exit_code == 0, result.output
    grid = run / "sample_n10_seed3_t1.png"
    assert Image.open(grid).size == (4 * 30 + 2, 3 * 30 + 2)  # 4 columns, 3 rows of 28 px + borders


def test_rerunning_the_resolved_config_recreates_the_run(vae, runs_dir):
    assert vae("train", *set_args("train.epochs=2"), "--name", "a").exit_code == 0
    assert vae("train", "--config", runs_dir / "a" / "config.yaml", "--name", "b").exit_code == 0
    a = torch.load(runs_dir / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(runs_dir / "b/checkpoints/last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_is_never_overwritten(vae, runs_dir):
    assert vae("train", *set_args("train.epochs=1"), "--name", "x").exit_code == 0
    before = (runs_dir / "x/checkpoints/last.pt").read_bytes()
    result = vae("train", *set_args("train.epochs=1"), "--name", "x")
    assert result.exit_code == 2 and "already exists" in result.output
    assert (runs_dir / "x/checkpoints/last.pt").read_bytes() == before


def test_sample_individual_and_moon(vae, runs_dir, tmp_path):
    assert vae("train", *set_args("train.epochs=1", "model.kind=ae")).exit_code == 0
    result = vae("sample", "--n", 3, "--individual", "--out", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(tmp_path / "s" / "00000.png").size == (28, 28)
    assert vae("moon", "0.5", tmp_path / "half.png").exit_code == 0
    picture = Image.open(tmp_path / "half.png")
    assert picture.mode == "L"
    half = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8).view(28, 28).int()
    assert half[:, 15:].sum() > 20 * half[:, :13].sum()  # lit on the right only


def test_metrics_lines_are_json(vae, runs_dir):
    assert vae("train", *set_args("train.epochs=1"), "--name", "m").exit_code == 0
    line = json.loads((runs_dir / "m" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"epoch", "train_loss", "test_loss", "test_kl", "test_mean_log_scale", "images_per_s"} <= set(line)


def test_keys_lists_every_config_key(vae):
    result = vae("keys")
    assert result.exit_code == 0
    assert all(key in result.output for key in all_keys())


def test_mnist_config_end_to_end(vae, runs_dir, mnist_root, monkeypatch):
    monkeypatch.setenv("VAE_DATA", str(mnist_root))
    result = vae("train", "--config", CONFIGS / "mnist.yaml", "--set", "train.epochs=1", "--name", "mnist")
    assert result.exit_code == 0, result.output
    record = runs.read_metrics(runs_dir / "mnist")[0]
    # One epoch of the pytorch/examples model reaches a test -ELBO near 129 nats on MNIST.
    assert 115 < record["test_loss"] < 145, record
    assert vae("sample", "--n", 16).exit_code == 0
