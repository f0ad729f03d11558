"""TensorBoard event files, read back: every metrics term per epoch, pictures, the config, no
duplicate points after a resume; without tensorboard one warning and the run carries on."""

import sys

import pytest

from conftest import TINY_MOONS
from vae_cli import runs

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
TINY = [a for o in TINY_MOONS for a in ("--set", o)]
STEPS_PER_EPOCH = 512 // 64


def read_board(run_dir):
    board = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    board.Reload()
    return board


def steps(board, tag):
    return [event.step for event in board.Scalars(tag)]


def test_every_metrics_term_is_a_curve_with_pictures_and_config(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=2", "--name", "b").exit_code == 0
    board = read_board(runs_dir / "b")
    record = runs.read_metrics(runs_dir / "b")[-1]
    tags = board.Tags()["scalars"]
    for key, value in record.items():
        if isinstance(value, float) and key.startswith(("train_", "test_")):
            tag = key.replace("_", "/", 1)
            assert steps(board, tag) == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH], tag
            assert board.Scalars(tag)[-1].value == pytest.approx(value, rel=1e-6)
    assert "speed/images_per_s" in tags and "train/learning_rate" in tags
    assert steps(board, "train/running_loss") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]  # refreshed at epoch ends
    assert {"reconstructions", "samples"} <= set(board.Tags()["images"])
    config_text = board.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "latent_dim: 8" in config_text and "hidden:\n  - 64" in config_text


def test_a_resumed_run_continues_the_same_curves_without_duplicates(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "r").exit_code == 0
    assert vae("train", "--resume", runs_dir / "r", "--set", "train.epochs=2").exit_code == 0
    board = read_board(runs_dir / "r")
    assert steps(board, "test/loss") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert steps(board, "train/running_loss") == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


def test_without_tensorboard_one_warning_and_the_run_carries_on(vae, runs_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    result = vae("train", *TINY, "--set", "train.epochs=2", "--name", "plain")
    assert result.exit_code == 0, result.output
    assert result.output.count("tensorboard is not installed") == 1
    assert not (runs_dir / "plain" / "tensorboard").exists()
    assert len(runs.read_metrics(runs_dir / "plain")) == 2


def hparams_sessions(run_dir):
    """The hparams plugin's session-start records in a run's event files, parsed."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2
    sessions = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    sessions.append(data.session_start_info)
    return sessions


def test_the_config_is_an_hparams_session_with_the_best_test_loss_as_metric(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=2", "--set", "train.lr=0.002", "--name", "h").exit_code == 0
    assert vae("train", "--resume", runs_dir / "h", "--set", "train.epochs=3").exit_code == 0
    sessions = hparams_sessions(runs_dir / "h")
    assert len(sessions) == 1  # the resumed run continues its session
    values = sessions[0].hparams
    assert values["train.lr"].number_value == pytest.approx(0.002)
    assert values["model.hidden"].string_value == "[64]" and values["model.kind"].string_value == "vae"
    losses = [record["test_loss"] for record in runs.read_metrics(runs_dir / "h")]
    best = read_board(runs_dir / "h").Scalars("hparams/best_test_loss")
    assert [event.step for event in best] == [STEPS_PER_EPOCH * epoch for epoch in (1, 2, 3)]
    assert [event.value for event in best] == pytest.approx([min(losses[:n]) for n in (1, 2, 3)], rel=1e-6)
