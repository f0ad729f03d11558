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
    assert vae("sample", "--run", "builtin:moons", "--n", 4, "--sampler", "gmm").exit_code == 0
    assert (tmp_path / "sample_n4_seed0_t1_gmm.png").is_file()
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


def test_the_builtin_model_knows_moons_and_flags_digits_noise_and_flat_pictures():
    """The unfamiliar-input check on the shipped model (benchmarks/familiarity.py measures it
    at scale): fresh moons from an unused seed pass, anything else is caught."""
    from vae_cli import familiarity, moons
    config, model, checkpoint = builtin.load("moons")
    profile = checkpoint["familiarity"]
    fresh = data.render_moons(config.data, 300, seed=99)[0]
    assert float(familiarity.unfamiliar(model, fresh, profile).double().mean()) <= 0.01
    g = torch.Generator().manual_seed(0)
    flat = torch.linspace(0, 1, 20).view(20, 1, 1, 1).expand(20, 1, 28, 28)
    noise = (0.5 + 0.2 * torch.randn(20, 1, 28, 28, generator=g)).clamp(0, 1)
    strokes = torch.zeros(20, 1, 28, 28)
    for i in range(20):  # digit-like strokes: a bar and a ring of different sizes
        strokes[i, 0, 4 + i % 5:24, 12 + i % 3:15 + i % 3] = 1
        strokes[i, 0, 6:8 + i % 4, 6:22] = 1
    for name, pictures in (("flat", flat), ("noise", noise), ("strokes", strokes)):
        assert bool(familiarity.unfamiliar(model, pictures, profile).all()), name


def test_old_checkpoints_are_judged_by_their_stored_error_profile():
    from vae_cli import familiarity
    _, model, _ = builtin.load("moons")
    image = torch.zeros(1, 28, 28)
    assert familiarity.judge(model, image, {"median": 1.0, "p99": 1e6}) is None
    assert "unlike the training images" in familiarity.judge(model, image + 0.5, {"median": 1.0, "p99": 1e-6})


def test_a_profile_stored_before_the_edge_measures_is_judged_by_the_six_it_holds():
    from vae_cli import familiarity
    config, model, checkpoint = builtin.load("moons")
    profile = checkpoint["familiarity"]
    assert profile["references"].shape[1] == len(familiarity.MEASURES) == 8
    assert profile["format"] == familiarity.PROFILE_FORMAT == "vae-cli/familiarity/2"
    six = {**profile, "format": "vae-cli/familiarity/1", "references": profile["references"][:, :6],
           "centre": profile["centre"][:6], "scale": profile["scale"][:6]}
    moons = data.render_moons(config.data, 50, seed=99)[0]
    flat = torch.full((5, 1, 28, 28), 0.5)
    assert not bool(familiarity.unfamiliar(model, moons, six).any())
    assert bool(familiarity.unfamiliar(model, flat, six).all())


def test_an_input_is_the_builtin_models_when_nearer_its_pictures_than_a_run_of_other_pictures():
    """Distances in units of each model's threshold: a moon 0.8 from a Fashion run's pictures and
    0.3 from the built-in model's is the built-in model's; for a moons run of one's own, a folder
    of one's own pictures or a checkpoint without a profile the two distances say nothing about
    which model is better, and only an input unfamiliar to the run moves."""
    from types import SimpleNamespace
    from vae_cli import familiarity

    def trained_on(name, profile="vae-cli/familiarity/2"):
        return SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(name=name)),
                               checkpoint={"familiarity": {"format": profile}})

    moons_model = trained_on("moons")
    assert familiarity.comparable_with_builtin(trained_on("fashion-mnist"), moons_model)
    assert familiarity.comparable_with_builtin(trained_on("mnist", "vae-cli/familiarity/1"), moons_model)
    for run in (trained_on("moons"), trained_on("folder"), trained_on("mnist", profile=None)):
        assert not familiarity.comparable_with_builtin(run, moons_model)
    run, by_builtin = torch.tensor([0.8, 0.2, 1.4, 1.2]), torch.tensor([0.3, 0.5, 0.9, 1.1])
    assert familiarity.belongs_to_builtin(run, by_builtin, comparable=True).tolist() == [True, False, True, False]
    assert familiarity.belongs_to_builtin(run, by_builtin, comparable=False).tolist() == [False, False, True, False]

def test_the_users_three_commands_blend_moons_through_the_builtin_model(vae, runs_dir, tmp_path, mnist_root,
                                                                        monkeypatch):
    """`vae train --config mnist.yaml; vae sample --n 64; vae interpolate full.png half.png` with
    moon pictures: the blend goes through the built-in moons model, said in one line naming the
    run not used and how to force it; with --run that run is used, with a warning."""
    from test_wheel_install import small_mnist
    small_mnist(mnist_root, tmp_path / "small")
    args = ["--set", f"data.root={tmp_path / 'small'}", "--set", "train.epochs=1", "--name", "digits"]
    assert vae("train", "--config", "mnist.yaml", *args).exit_code == 0
    assert vae("sample", "--n", 64).exit_code == 0
    assert vae("moon", 1, "full.png").exit_code == vae("moon", 0.5, "half.png").exit_code == 0
    result = vae("interpolate", "full.png", "half.png")
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "builtin:moons" in line]
    digits = str(runs_dir / "digits")
    assert len(said) == 1 and digits in said[0] and f"--run {digits}" in said[0], result.output
    assert (tmp_path / "interpolate_full_half_slerp_11steps.png").is_file()
    assert not list((runs_dir / "digits").glob("interpolate_*"))

    forced = vae("interpolate", "full.png", "half.png", "--run", digits)
    assert forced.exit_code == 0 and "builtin:moons" not in forced.output
    assert "full.png: unlike the training images" in " ".join(forced.output.split())
    assert list((runs_dir / "digits").glob("interpolate_full_half_*.png"))

    own = vae("interpolate", "test:0", "test:1")  # digits from its own test set: no switch, no warning
    assert own.exit_code == 0 and "unlike" not in own.output and "builtin" not in own.output, own.output

    # test:0 names the run's own picture (in the built-in model's data it is another one): even
    # when the two models' distances say the built-in model's, the run blends it.
    from vae_cli import familiarity
    from vae_cli.images import save_each
    monkeypatch.setattr(familiarity, "belongs_to_builtin", lambda run, by_builtin, comparable: run >= 0)
    own = vae("interpolate", "test:2", "test:3")
    assert own.exit_code == 0 and "builtin" not in own.output, own.output
    assert list((runs_dir / "digits").glob("interpolate_test-2_test-3_*.png"))
    assert "builtin:moons instead" in vae("interpolate", "full.png", "half.png").output  # files still move

    # With --run, each input taken as the built-in model's and familiar to the run is warned of, by its name.
    digits_config = config_module.from_dict({"data": {"name": "mnist", "root": str(tmp_path / "small")}}, "mnist")
    save_each(data.as_float(data.load(digits_config.data).test[2:4]), tmp_path, ["two.png", "three.png"])
    monkeypatch.setattr(familiarity, "belongs_to_builtin", lambda run, by_builtin, comparable: torch.tensor([False, True]))
    warned = " ".join(vae("interpolate", "two.png", "three.png", "--run", digits).output.split())
    assert "three.png: nearer the built-in moons model's" in warned and "two.png: nearer" not in warned, warned


def test_the_builtin_model_flags_real_digits_read_as_interpolate_reads_them(tmp_path, mnist_root):
    """MNIST test digits written as PNG files and read back as `vae interpolate` reads its
    inputs (framed to the bright object, shrunk to 28 px) are unlike the moons: 99.3% of these
    300, 99.1% of the benchmark's 1,000 (98.1% before the edge measures: a thin "1" was a thin
    crescent's neighbour)."""
    from vae_cli import familiarity
    from vae_cli.images import save_each
    config, model, checkpoint = builtin.load("moons")
    digits = data.load(config_module.from_dict({"data": {"name": "mnist", "root": str(mnist_root)}}, "mnist").data).test
    names = [f"{i:03d}.png" for i in range(300)]
    save_each(data.as_float(digits[:300]), tmp_path, names)
    inputs = torch.stack(data.load_references([str(tmp_path / name) for name in names], config.data,
                                              on_note=lambda note: None))
    assert float(familiarity.unfamiliar(model, inputs, checkpoint["familiarity"]).double().mean()) >= 0.99


def test_a_small_test_set_is_topped_up_with_seeded_training_images():
    from vae_cli import familiarity
    config = config_module.load(None)  # the moons: 1,024 test images, no binarizing
    train, test = torch.rand(9000, 1, 4, 4), torch.rand(1024, 1, 4, 4)
    extra = familiarity.training_top_up(config, test, train, conditional=False)
    assert len(extra) == familiarity.MIN_REFERENCES - len(test)
    assert torch.equal(extra, familiarity.training_top_up(config, test, train, conditional=False))
    assert any(torch.equal(extra[0], image) for image in train)  # training images, not copies of the test set
    assert familiarity.training_top_up(config, torch.rand(familiarity.MIN_REFERENCES, 1, 4, 4), train, False) is None
    assert familiarity.training_top_up(config, test, train, conditional=True) is None
