"""Bad input gets one clear line and the right exit code and writes nothing; interruption loses
nothing; checkpoints cannot run code."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_MOONS
from vae_cli import runs
from vae_cli.kinds.vae import VAE

TINY = [a for o in TINY_MOONS for a in ("--set", o)]


def assert_clean_failure(result, code, message):
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, message", [
    ("model: [1\n", "not valid YAML"),
    ("just a string\n", "a config must be a mapping"),
    ("model:\n  latnt_dim: 2\n", "did you mean 'model.latent_dim'"),
    ("model:\n  latent_dim: two\n", "model.latent_dim must be an integer from 1 to 4096, got 'two'"),
    ("train:\n  lr: -1\n", "train.lr must be a number > 0"),
])
def test_bad_config_files(vae, runs_dir, tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    assert_clean_failure(vae("train", "--config", tmp_path / "bad.yaml"), 2, message)
    assert not runs_dir.exists()


@pytest.mark.parametrize("args, code, message", [
    (["train", "--config", "nope.yaml"], 2, "config file nope.yaml does not exist"),
    (["train", "--set", "train.epoch=2"], 2, "did you mean 'train.epochs'"),
    (["train", "--set", "train.epochs=-1"], 2, "train.epochs must be an integer >= 1"),
    (["train", "--set", "train.epochs"], 2, "expected KEY=VALUE"),
    (["train", "--set", "data.name=mnist", "--set", "data.root=empty"], 1, "put the four *-ubyte.gz files there"),
    (["train", "--set", "data.name=folder", "--set", "data.path=."], 1, "holds 0 readable image"),
    (["sample"], 1, "no runs yet"),
    (["sample", "--run", "nowhere"], 1, "run directory nowhere does not exist"),
    (["eval", "--run", "."], 1, "no checkpoint at"),
    (["sample", "--n", "0"], 2, "'--n': Input should be greater than or equal to 1"),
    (["interpolate", "a.png", "b.png", "--steps", "-3"], 2, "'--steps': Input should be greater than or equal to 2"),
])
def test_bad_command_lines(vae, runs_dir, monkeypatch, args, code, message):
    # Offline stand-in: the MNIST download must fail without touching the network.
    monkeypatch.setattr("torchvision.datasets.MNIST.mirrors", ["http://127.0.0.1:9/"])
    Path("empty").mkdir()
    result = vae(*args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not runs_dir.exists()


@pytest.fixture
def trained(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "ok").exit_code == 0
    return runs_dir / "ok"


def test_checkpoint_of_another_model(vae, trained):
    path = trained / "checkpoints" / "best.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["model"]["latent_dim"] = 7
    torch.save(checkpoint, path)
    assert_clean_failure(vae("sample", "--run", trained), 1, "do not fit the model its config describes")


def test_truncated_checkpoint(vae, trained):
    path = trained / "checkpoints" / "best.pt"
    path.write_bytes(path.read_bytes()[:1000])
    assert_clean_failure(vae("sample", "--run", trained), 1, "is truncated or another file")
    assert vae("sample", "--run", trained, "--checkpoint", "last").exit_code == 0


def test_random_bytes_are_simply_not_a_checkpoint(vae, trained):
    (trained / "checkpoints" / "best.pt").write_bytes(os.urandom(5000))
    assert_clean_failure(vae("sample", "--run", trained), 1, "best.pt is not a checkpoint")


@pytest.mark.parametrize("args, message", [
    (["plot", "--image", "100000"], "--image 100000: the test split has"),
    (["compare", "RUN", "--pair", "0", "100000", "--out", "c.png"], "--pair 0 100000: the test split has"),
    (["interpolate", "test:0", "test:100000"], "test:100000: the test split has"),
])
def test_an_image_index_beyond_the_split_names_the_range_and_writes_nothing(vae, trained, args, message):
    before = sorted(path.name for path in trained.iterdir())
    assert_clean_failure(vae(*[trained if arg == "RUN" else arg for arg in args]), 2, message)
    assert sorted(path.name for path in trained.iterdir()) == before
    assert not Path("c.png").exists()


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_and_runs_nothing(vae, trained, tmp_path):
    with open(trained / "checkpoints" / "best.pt", "wb") as handle:
        pickle.dump({"format": "vae-cli/1", "model": RunsCode()}, handle)
    assert_clean_failure(vae("sample", "--run", trained), 1, "is not a checkpoint")
    assert not (tmp_path / "pwned").exists()
    # torch.save'd file with an object inside: refused the same way
    torch.save({"format": "vae-cli/1", "model": RunsCode()}, trained / "checkpoints" / "best.pt")
    assert_clean_failure(vae("sample", "--run", trained), 1, "refused unread")
    assert not (tmp_path / "pwned").exists()


def test_debug_shows_the_traceback(vae, runs_dir):
    result = vae("--debug", "sample", "--run", "nowhere")
    assert result.exit_code == 1 and "Traceback" in result.output


def test_a_failed_save_leaves_the_previous_checkpoint(trained, monkeypatch):
    path = trained / "checkpoints" / "last.pt"
    before = path.read_bytes()

    def dies_halfway(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError):
        runs.save_checkpoint({"model": {}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary left


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(vae, runs_dir, monkeypatch):
    honest = VAE.objective
    calls = {"n": 0}

    def poisoned(self, x, noise=None, labels=None):
        objective = honest(self, x, noise, labels)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 8 + 3:  # epoch 2 (8 steps per epoch), step 3
                objective.loss = objective.loss * float("nan")
        return objective
    monkeypatch.setattr(VAE, "objective", poisoned)
    result = vae("train", *TINY, "--set", "train.epochs=3", "--name", "nan")
    assert_clean_failure(result, 1, "at epoch 2 step 3")
    assert "lower train.lr" in result.output
    last = torch.load(runs_dir / "nan/checkpoints/last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["model"].values())
    assert (runs_dir / "latest").read_text().strip() == "nan"


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def comparable(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("seconds", "images_per_s")} for m in metrics]


# Bit for bit is promised at a fixed thread count: train.threads=auto may change the count
# mid-run, and the last digits of some products with it (docs/speed.md).
FIXED_THREADS = ["--set", "train.threads=1"]


def test_resume_after_epoch_2_equals_an_uninterrupted_run_bit_for_bit(vae, runs_dir):
    assert vae("train", *TINY, *FIXED_THREADS, "--set", "train.epochs=4", "--name", "straight").exit_code == 0
    assert vae("train", *TINY, *FIXED_THREADS, "--set", "train.epochs=2", "--name", "split").exit_code == 0
    result = vae("train", "--resume", runs_dir / "split", "--set", "train.epochs=4")
    assert result.exit_code == 0, result.output
    a, b = weights(runs_dir / "straight"), weights(runs_dir / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert comparable(runs.read_metrics(runs_dir / "straight")) == comparable(runs.read_metrics(runs_dir / "split"))


def test_resume_refuses_changes_that_would_alter_the_run(vae, trained):
    assert_clean_failure(vae("train", "--resume", trained, "--set", "train.lr=0.1"), 2,
                         "--set train.lr cannot be changed; only train.device, train.epochs, train.threads can")


def vae_process(runs_dir: Path, *args) -> subprocess.Popen:
    env = {**os.environ, "VAE_RUNS": str(runs_dir)}
    return subprocess.Popen([sys.executable, "-m", "vae_cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_epoch_saves_and_resume_finishes_identically(runs_dir, sig):
    longer = ["--set", "data.train_size=16384", "--set", "model.network=mlp", "--set", "model.hidden=[256]", "--set", "train.batch_size=16",
              "--set", "data.test_size=128", "--set", "train.epochs=3", *FIXED_THREADS]
    straight = vae_process(runs_dir, "train", *longer, "--name", "straight")
    assert straight.wait(timeout=300) == 0, straight.stdout.read()

    interrupted = vae_process(runs_dir, "train", *longer, "--name", "cut")
    deadline = time.time() + 120
    while not (runs_dir / "cut" / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # inside epoch 2 (1024 steps, about a second)
    interrupted.send_signal(sig)
    output = interrupted.communicate(timeout=60)[0]
    assert interrupted.returncode == 130, output
    assert "resume with: vae train --resume" in output
    # A stop the user asked for is no error: "stopped at epoch 2 step N/1024 (Ctrl-C) and saved ..."
    assert "error:" not in output and "stopped at epoch" in output, output
    saved = torch.load(runs_dir / "cut/checkpoints/last.pt", weights_only=True)
    assert saved["epoch"] < 3 and 0 < saved["step"] < 1024, (saved["epoch"], saved["step"])  # mid-epoch
    assert runs.summary(runs_dir / "cut")["state"] == "interrupted"  # no longer "training"

    resumed = vae_process(runs_dir, "train", "--resume", runs_dir / "cut")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    a, b = weights(runs_dir / "straight"), weights(runs_dir / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert comparable(runs.read_metrics(runs_dir / "straight")) == comparable(runs.read_metrics(runs_dir / "cut"))
