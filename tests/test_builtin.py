"""The built-in moons model (`--run builtin:moons`): its weights belong to the shipped config,
load without unpickling, blend as a moons run does, and stand in when there is no run yet."""

import json
import zipfile

import pytest
import torch
from PIL import Image

from vae_cli import builtin, catalog, data, latent, runs
from vae_cli import config as config_module


def test_the_shipped_weights_belong_to_the_shipped_config_and_its_seed():
    stored = torch.load(builtin.weights_path("moons"), weights_only=True)
    shipped = config_module.load(catalog.folder() / "moons.yaml")
    assert config_module.from_stored(stored["config"], "moons.pt") == shipped, (
        f"vae_cli/weights/moons.pt was trained from another config: run `{builtin.COMMAND} moons` "
        f"(make builtin) and commit the file")
    assert stored["config"]["train"]["seed"] == shipped.train.seed
    assert stored["made_by"] == f"{builtin.COMMAND} moons"
    assert stored["epoch"] <= shipped.train.epochs


def test_the_weights_are_small_and_plain_tensors():
    path = builtin.weights_path("moons")
    assert path.stat().st_size < 5_000_000
    assert zipfile.is_zipfile(path)  # torch.load(weights_only=True) reads it: no pickled objects run
    config, model, checkpoint = builtin.load("moons")
    assert config.data.name == "moons" and not model.training and checkpoint["format"] == runs.CHECKPOINT_FORMAT


def test_the_builtin_model_blends_full_and_half_moon_through_three_quarters(tmp_path):
    """The article's experiment on the shipped weights: the decoded midpoint of a full and a half
    moon is closer to a three-quarter moon than the pixel cross-fade is."""
    config, model, _ = builtin.load("moons")
    from vae_cli import moons
    from vae_cli.images import save_grid
    for phase, name in ((1.0, "full.png"), (0.5, "half.png"), (0.75, "three_quarter.png")):
        save_grid(moons.render_one(phase).unsqueeze(0), tmp_path / name, columns=1, padding=0)
    full, half, three_quarter = data.load_references(
        [str(tmp_path / n) for n in ("full.png", "half.png", "three_quarter.png")], config.data)
    midpoint = latent.interpolation_strip(model, full, half, 3, "slerp")[1]
    decoded, crossfade = (float(((x - three_quarter) ** 2).mean()) for x in (midpoint, 0.5 * (full + half)))
    assert decoded < 0.8 * crossfade


def test_an_unknown_builtin_name_lists_the_ones_there_are(vae):
    result = vae("sample", "--run", "builtin:mars")
    assert result.exit_code == 2 and "no built-in model 'mars'; there is builtin:moons" in result.output


def test_sample_eval_and_plot_name_the_builtin_model_and_write_into_the_current_folder(vae, runs_dir, tmp_path):
    result = vae("sample", "--run", "builtin:moons", "--n", 4)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "sample_n4_seed0_t1.png").size == (2 * 30 + 2, 2 * 30 + 2)
    result = vae("eval", "--run", "builtin:moons", "--k", 2)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval.json").read_text())["run"] == "builtin:moons"
    assert vae("plot", "--run", "builtin:moons").exit_code == 0
    assert (tmp_path / "latent_traversals.png").is_file()
    assert vae("sample", "--run", "builtin:moons", "--checkpoint", "last").exit_code == 2
    assert not runs_dir.exists()


def test_interpolate_in_a_folder_without_runs_uses_the_builtin_model_and_says_so(vae, runs_dir, tmp_path):
    assert vae("moon", 1, "full.png").exit_code == vae("moon", 0.5, "half.png").exit_code == 0
    result = vae("interpolate", "full.png", "half.png")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "built-in moons model" in line]
    assert len(lines) == 1 and "--run builtin:moons" in lines[0], result.output
    strip = Image.open(tmp_path / "interpolate_full_half_slerp_11steps.png")
    assert strip.size == (13 * 30 + 2, 32)
    assert not runs_dir.exists()


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_without_runs_other_commands_point_at_the_builtin_model(vae, command):
    result = vae(command)
    assert result.exit_code == 1 and "no runs yet" in result.output and "--run builtin:moons" in result.output
