"""Finding and loading runs through the CLI: runs trained elsewhere, the runs folder, resume
edge cases and configs that say nothing."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from conftest import TINY_MOONS
from vae_cli import config, runs
from vae_cli.errors import VaeError

TINY = [a for o in TINY_MOONS for a in ("--set", o)]


def test_an_empty_config_file_keeps_every_set(vae, runs_dir, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing here yet\n")
    result = vae("train", "--config", tmp_path / "empty.yaml", *TINY, "--set", "train.epochs=1",
                 "--set", "data.train_size=256", "--name", "e")
    assert result.exit_code == 0, result.output
    assert len(runs.read_metrics(runs_dir / "e")) == 1
    saved = config.load(runs_dir / "e" / "config.yaml")
    assert (saved.train.epochs, saved.data.train_size, saved.model.hidden) == (1, 256, [64])


@pytest.fixture
def gpu_run(vae, runs_dir):
    """A run whose config says it trained on a GPU, as if copied over from a GPU machine."""
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "gpu").exit_code == 0
    run = runs_dir / "gpu"
    for which in ("best", "last"):
        path = run / "checkpoints" / f"{which}.pt"
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["config"]["train"]["device"] = "cuda"
        torch.save(checkpoint, path)
    return run


@pytest.mark.parametrize("args", [
    ["eval", "--k", "5"], ["sample", "--n", "4"], ["interpolate", "test:0", "test:1", "--steps", "3"],
    ["plot"], ["eval", "--k", "5", "--device", "cpu"], ["compare", "runs/gpu", "runs/gpu", "--k", "2", "--images", "8"],
])
def test_a_run_trained_on_a_gpu_loads_on_this_machine(vae, gpu_run, args):
    result = vae(*args)
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_device_is_one_line(vae, gpu_run):
    result = vae("sample", "--device", "cuda")
    assert result.exit_code == 1 and "device cuda is not available on this machine" in result.output
    result = vae("sample", "--device", "gpu")
    assert result.exit_code == 2 and "--device must be auto, cpu, cuda, cuda:N or mps" in result.output


def test_resume_of_a_checkpoint_without_config_is_one_line_and_leaves_it(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "r").exit_code == 0
    path = runs_dir / "r" / "checkpoints" / "last.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["config"]
    torch.save(checkpoint, path)
    result = vae("train", "--resume", runs_dir / "r", "--set", "train.epochs=2")
    assert result.exit_code == 1 and "stored config is unusable" in result.output, result.output
    assert "Traceback" not in result.output


def test_overrides_leave_the_callers_mapping_alone():
    stored = {"train": {"epochs": 1}}
    config.with_overrides(stored, ["train.epochs=5"], "test")
    assert stored == {"train": {"epochs": 1}}


def test_runs_are_found_through_runs_dir_and_the_message_names_the_folder(vae, runs_dir, tmp_path, monkeypatch):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "here").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("VAE_RUNS")
    result = vae("sample", "--n", "4")
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"no runs yet in {elsewhere / 'runs'}" in message and "--runs-dir" in message and "VAE_RUNS" in message
    result = vae("--runs-dir", runs_dir, "sample", "--n", "4")
    assert result.exit_code == 0, result.output
    assert (runs_dir / "here" / "sample_n4_seed0_t1.png").is_file()


def test_a_bare_name_trains_the_shipped_config_and_the_run_records_it(vae, runs_dir):
    result = vae("train", "--config", "moons-ae", *TINY, "--set", "train.epochs=1", "--name", "bare")
    assert result.exit_code == 0, result.output
    saved = (runs_dir / "bare" / "config.yaml").read_text()
    assert saved.startswith("# resolved from the shipped config moons-ae.yaml")
    assert config.load(runs_dir / "bare" / "config.yaml").model.kind == "ae"


def test_an_unknown_config_name_lists_the_shipped_ones(vae, runs_dir):
    result = vae("train", "--config", "mnist-vea30.yaml")
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "no shipped config is called 'mnist-vea30'" in message
    assert "mnist-vae30" in message and "moons" in message


def test_vae_configs_describes_each_shipped_config(vae, runs_dir):
    result = vae("configs")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    for name in ("mnist", "mnist-pca30", "moons", "fashion-mnist"):
        assert name in rows, result.output
    assert "fashion-mnist" in rows["fashion-mnist"] and "vae conv z=20" in rows["fashion-mnist"]
    assert "pca z=30" in rows["mnist-pca30"]


def test_vae_runs_lists_newest_first_and_shows_one(vae, runs_dir):
    assert vae("runs").exit_code == 1
    for name, epochs in (("older", 1), ("newer", 2)):
        assert vae("train", *TINY, "--set", f"train.epochs={epochs}", "--name", name).exit_code == 0
    # As if "older" had been stopped after its first of three planned epochs.
    path = runs_dir / "older" / "config.yaml"
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 3"))
    (runs_dir / "newer" / "metrics.jsonl").touch()
    result = vae("runs")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] in (["older"], ["newer"])]
    assert [row[0] for row in rows] == ["newer", "older"]
    best = min(m["test_loss"] for m in runs.read_metrics(runs_dir / "newer"))
    assert rows[0][1:6] == ["moons", "vae", "2/2", f"{best:.2f}", "finished"]
    assert rows[1][3:4] + rows[1][5:6] == ["1/3", "interrupted"]

    assert not (runs_dir / "newer" / runs.TRAINING_MARK).exists()  # only while a process trains it

    result = vae("runs", "newer")
    assert result.exit_code == 0, result.output
    for text in ("hidden [64]", "test_loss", "checkpoints/last.pt", "samples_002.png", "config.yaml"):
        assert text in result.output, text
    result = vae("runs", "nothing-here")
    assert result.exit_code == 1 and "does not exist" in result.output


def test_a_run_is_named_by_its_folder_name_or_its_path(runs_dir, tmp_path):
    for folder in (runs_dir / "r1", tmp_path / "elsewhere" / "r2", tmp_path / "not-a-run"):
        folder.mkdir(parents=True)
    for folder in (runs_dir / "r1", tmp_path / "elsewhere" / "r2"):
        (folder / "config.yaml").write_text("{}\n")
    assert runs.named_run("r1") == runs_dir / "r1"
    assert runs.named_run(str(tmp_path / "elsewhere" / "r2")) == tmp_path / "elsewhere" / "r2"
    with pytest.raises(VaeError, match="not-a-run has no config.yaml: it is not a folder made by `vae train`"):
        runs.named_run(str(tmp_path / "not-a-run"))
    with pytest.raises(VaeError, match="run directory .*r3 does not exist"):
        runs.named_run("r3")


def test_piped_tables_of_prose_stay_readable_and_whole(tmp_path):
    """Piped or logged, rich would fold at 80 columns, and unfolded a table of descriptions ran to
    about 290; `vae configs` and `vae keys` wrap their prose column within 120 columns, and each
    config's description is there whole, on its own row's lines."""
    import os
    import subprocess
    import sys

    from vae_cli import catalog
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "vae_cli", *args], capture_output=True,  # noqa: E731
                                       text=True, env=env, cwd=tmp_path, check=True).stdout
    printed = run("configs")
    lines = printed.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 120
    column = next(line.index("description") for line in lines if "description" in line.split())
    descriptions, name = {}, None
    for line in lines[lines.index(next(line for line in lines if line.split()[:1] == ["name"])) + 2:]:
        if not line.strip() or line.startswith("from "):
            continue
        name = line[:column].split()[0] if line[:column].strip() else name
        descriptions[name] = f"{descriptions.get(name, '')} {line[column:].strip()}".strip()
    for entry in catalog.entries():
        assert descriptions[entry.name] == " ".join(entry.description.split()), printed
    assert max(len(line.rstrip()) for line in run("keys").splitlines()) <= 120


def test_a_long_run_name_stays_on_its_row_when_vae_runs_is_piped(vae, runs_dir):
    """Piped, `vae runs` is as wide as its content (rich alone would cut it at 80 columns); a
    COLUMNS the user set is still honoured."""
    import os
    import subprocess
    import sys

    name = "fashion-conv-beta4-latent32-cosine-lr3e-4-batch256-seed7-long"
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", name).exit_code == 0

    def piped(**columns):
        env = {key: value for key, value in os.environ.items() if key != "COLUMNS"} | columns
        return subprocess.run([sys.executable, "-m", "vae_cli", "runs"], capture_output=True, text=True,
                              env=env, check=True).stdout.splitlines()
    rows = [line.split() for line in piped() if line.split()[:1] == [name]]
    assert len(rows) == 1 and rows[0][1:4] + rows[0][5:6] == ["moons", "vae", "1/1", "finished"], rows
    narrow = piped(COLUMNS="80")
    assert all(len(line) <= 80 for line in narrow) and not any(name in line for line in narrow), narrow


def test_a_run_being_trained_shows_as_training_and_cannot_be_resumed_twice(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "cut").exit_code == 0
    path = runs_dir / "cut" / "config.yaml"
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 3"))
    with runs.training_mark(runs_dir / "cut"):  # this test's own, live process
        assert runs.summary(runs_dir / "cut")["state"] == "training"
        result = vae("train", "--resume", runs_dir / "cut")
        assert result.exit_code == 2 and f"being trained right now by process {os.getpid()}" in result.output
    assert runs.summary(runs_dir / "cut")["state"] == "interrupted"

    # A mark left behind by a killed process names a process that no longer exists.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (runs_dir / "cut" / runs.TRAINING_MARK).write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid}))
    assert runs.summary(runs_dir / "cut")["state"] == "interrupted"
    result = vae("train", "--resume", runs_dir / "cut", "--set", "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert not (runs_dir / "cut" / runs.TRAINING_MARK).exists()
