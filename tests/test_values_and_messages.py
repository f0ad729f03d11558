"""Unusual values and the messages about them: ranges for seeds, names and sizes, a memory
estimate before allocating, warnings for settings that cannot help, Typer's usage errors in
one line, user text printed literally, and resuming a finished run."""

import os
from pathlib import Path

import pytest

from conftest import TINY_MOONS
from test_machine_faults import assert_one_line_error, snapshot

TINY = [a for o in TINY_MOONS for a in ("--set", o)]


@pytest.mark.parametrize("args, message", [
    (["sample", "--n", "0"], "'--n'"),
    (["sample", "--n", "-5"], "'--n'"),
    (["sample", "--temperature", "-1"], "'--temperature'"),
    (["interpolate", "a.png", "b.png", "--steps", "0"], "'--steps'"),
    (["interpolate", "a.png", "b.png", "--steps", "100000", "--gif"], "'--steps'"),
    (["sample", "--seed", "99999999999999999999"], "'--seed'"),
    (["sample", "--checkpoint", "middle"], "use best or last"),
    (["sample", "--bogus"], "--bogus"),
    (["train", "--set", "train.seed=99999999999999999999"], "train.seed must be an integer from 0 to 4294967295"),
    (["train", "--set", "model.latent_dim=100000"], "model.latent_dim must be an integer from 1 to 4096"),
    (["train", "--set", "train.batch_size=1000000000"], "train.batch_size must be an integer from 1 to"),
    (["train", "--set", "train.threads=100000"], "train.threads must be auto or an integer from 0 to"),
    *[(["train", "--name", name], "a run name is 1 to 64 letters, digits, - and _, starting with a letter or digit")
      for name in ["a b", "a\nb", "*", "-dash", ".hidden", "x" * 300, "latest"]],
])
def test_usage_errors_are_one_line_with_exit_2(vae, runs_dir, args, message):
    assert_one_line_error(vae(*args), 2, message)
    assert not runs_dir.exists()


def test_a_run_too_large_for_memory_is_refused_with_the_estimate(vae, runs_dir):
    result = vae("train", "--set", "data.image_size=1024", "--set", "model.network=conv",
                 "--set", "model.hidden=[32,64]", "--set", "data.train_size=100000")
    assert_one_line_error(result, 1, "this run needs about", "GB free", "lower data.image_size")
    assert not runs_dir.exists()


def test_settings_that_cannot_help_are_warned_about(vae, runs_dir):
    too_many = (os.cpu_count() or 1) + 1
    result = vae("train", *TINY, "--set", "train.epochs=1", "--set", "train.precision=fp16",
                 "--set", f"train.threads={too_many}", "--name", "w")
    assert result.exit_code == 0, result.output
    assert "warning: train.precision=fp16 on the CPU" in result.stderr
    assert f"warning: train.threads={too_many} is more than the" in result.stderr
    assert "using" in result.stderr


def test_user_text_is_printed_literally_not_as_markup(vae, runs_dir):
    vae("train", *TINY, "--set", "train.epochs=1", "--name", "ok")
    result = vae("interpolate", "test:-1", "test:0", "--run", runs_dir / "ok")
    assert_one_line_error(result, 2, "test:-1")  # an index out of range is a usage error
    result = vae("sample", "--run", "[red]nowhere:-1:")
    assert_one_line_error(result, 1, "run directory [red]nowhere:-1: does not exist")


def test_resuming_a_finished_run_says_so_and_changes_nothing(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=2", "--name", "done").exit_code == 0
    before = snapshot(runs_dir)
    result = vae("train", "--resume", runs_dir / "done")
    assert result.exit_code == 0 and "is complete (2 of 2 epochs)" in result.output
    assert "--set train.epochs=N with N > 2" in result.output and "at epoch 3" not in result.output
    assert_one_line_error(vae("train", "--resume", runs_dir / "done", "--set", "train.epochs=1"), 2,
                          "has already trained 2 epochs")
    assert snapshot(runs_dir) == before  # config.yaml still says epochs: 2


def test_a_folder_or_a_file_where_the_other_is_expected(vae, runs_dir, tmp_path):
    vae("train", *TINY, "--set", "train.epochs=1", "--name", "ok")
    assert_one_line_error(vae("interpolate", tmp_path, "a.png", "--run", runs_dir / "ok"), 1,
                          "a folder, not an image file")
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    assert_one_line_error(vae("sample", "--run", tmp_path / "passwd"), 1, "is a file, not a run directory")


def test_a_missing_dataset_creates_no_folders(vae, runs_dir, tmp_path):
    (tmp_path / "datasets").mkdir()
    assert_one_line_error(vae("train", "--set", "data.name=mnist", "--set", f"data.root={tmp_path / 'datasets'}"),
                          1, "put the four *-ubyte.gz files there")
    (tmp_path / "datasets" / "MNIST" / "raw").mkdir(parents=True)
    too_deep = tmp_path / "datasets" / "MNIST"
    assert_one_line_error(vae("train", "--set", "data.name=mnist", "--set", f"data.root={too_deep}"),
                          1, f"the root is one level too deep: use {tmp_path / 'datasets'}")
    assert [p.relative_to(tmp_path) for p in sorted((tmp_path / "datasets").rglob("*"))] == [
        Path("datasets/MNIST"), Path("datasets/MNIST/raw")]
    assert not Path("data").exists() and not runs_dir.exists()  # torchvision's default root

