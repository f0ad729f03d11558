import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_MOONS
from vae_cli import blend, evaluation, latent, references
from vae_cli.errors import UsageError


def test_interpolate_names_never_replace_and_individual_frames_include_the_midpoint(vae, tiny_run, tmp_path, capsys):
    assert vae("moon", 1.0, tmp_path / "full.png").exit_code == 0
    assert vae("moon", 0.5, tmp_path / "half.png").exit_code == 0
    full, half = str(tmp_path / "full.png"), str(tmp_path / "half.png")
    first = blend.interpolate(full, half, individual=True, device="cpu")
    second = blend.interpolate(full, half, method="linear", steps=5, gif=True, device="cpu")
    third = blend.interpolate(full, half, device="cpu")
    assert [blended.strip for blended in (first, second, third)] == [
        tiny_run / "interpolate_full_half_slerp_11steps.png", tiny_run / "interpolate_full_half_linear_5steps.png",
        tiny_run / "interpolate_full_half_slerp_11steps_2.png"]
    assert first.run == str(tiny_run) and first.gif is None and third.frames is None
    assert second.gif == tiny_run / "interpolate_full_half_linear_5steps.gif" and second.gif.is_file()
    frames = sorted(p.name for p in first.frames.iterdir())
    assert len(frames) == 11 and frames[0] == "t0.000.png" and "t0.500.png" in frames
    assert "t0.000.png decodes A's code, t1.000.png B's" in " ".join(capsys.readouterr().out.split())
    assert Image.open(first.frames / "t0.500.png").size == (28, 28)


def test_inputs_and_labels_name_the_output_files():
    assert references.name_part("pictures/full moon.png") == "full-moon"
    assert references.name_part("test:7") == "test-7"
    assert references.name_part("T-shirt") == "T-shirt"


def test_moon_draws_moons_lit_from_any_angle(vae, tmp_path):
    assert vae("moon", 0.6, tmp_path / "a.png", "--photo", "--size", 200, "--angle", 180).exit_code == 0
    assert Image.open(tmp_path / "a.png").size == (200, 200)
    assert vae("moon", 0.5, tmp_path / "above.png", "--angle", 90).exit_code == 0
    half = torch.tensor(np.asarray(Image.open(tmp_path / "above.png")), dtype=torch.float32)
    assert half[:14].sum() > 20 * half[14:].sum()  # a clean half moon lit from above: its upper half
    result = vae("moon", 0.6, tmp_path / "b.png", "--photo", "--angle", "above")
    assert result.exit_code == 2 and "--angle" in result.output and not (tmp_path / "b.png").exists()


def test_slerp_keeps_the_ends_and_the_norm():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = latent.interpolate_codes(a, b, 5, "slerp")
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0))
    assert torch.allclose(latent.interpolate_codes(a, b, 3, "linear")[1], torch.tensor([1.5, 1.5]))


def test_an_unknown_interpolation_is_an_error(runs_dir):
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        latent.interpolate_codes(torch.zeros(2), torch.ones(2), 3, "cubic")
    with pytest.raises(UsageError, match="--method 'cubic': use one of linear, slerp"):
        blend.interpolate("a.png", "b.png", method="cubic")  # before the files are looked for


@pytest.fixture
def tiny_run(vae, runs_dir):
    args = [a for o in (*TINY_MOONS, "train.epochs=2") for a in ("--set", o)]
    assert vae("train", *args, "--name", "tiny").exit_code == 0
    return runs_dir / "tiny"


def test_eval_writes_a_report(vae, tiny_run):
    result = vae("eval", "--k", 50)
    assert result.exit_code == 0, result.output
    report = json.loads((tiny_run / "eval.json").read_text())
    assert report["neg_elbo"] >= report["nll"] > 0
    assert report["bits_per_dim"] > 0 and 0 <= report["active_units"] <= len(report["kl_per_dim"]) == 8
    assert "NLL, k=50" in result.output


def test_eval_is_reproducible_from_its_seed(tiny_run):
    reports = []
    for seed in (3, 3, 4):
        report, path = evaluation.evaluate_run(None, k=20, seed=seed, device="cpu")
        assert path == tiny_run / "eval.json" and json.loads(path.read_text()) == report
        reports.append(report)
    assert reports[0]["nll"] == reports[1]["nll"] != reports[2]["nll"]
    assert reports[0]["seed"] == 3 and reports[0]["run"] == str(tiny_run)


def test_eval_says_elbo_is_undefined_for_an_autoencoder(vae, runs_dir):
    args = [a for o in (*TINY_MOONS, "train.epochs=1", "model.kind=ae") for a in ("--set", o)]
    assert vae("train", *args, "--name", "ae").exit_code == 0
    result = vae("eval", "--k", 5)
    assert result.exit_code == 0 and "undefined for kind=ae" in result.output
    assert "nll" not in json.loads((runs_dir / "ae" / "eval.json").read_text())


def test_interpolate_dataset_references_and_rgba_input(vae, tiny_run, tmp_path):
    Image.new("RGBA", (50, 40), (255, 255, 255, 255)).save(tmp_path / "white.png")
    result = vae("interpolate", "test:0", tmp_path / "white.png", "--out", tmp_path / "o.png", "--method", "slerp")
    assert result.exit_code == 0, result.output
    assert "converted RGBA to L" in result.output
    assert Image.open(tmp_path / "o.png").size == (13 * 30 + 2, 32)  # the inputs and 11 steps
    Image.new("RGB", (50, 40), (200, 120, 40)).save(tmp_path / "colour.jpg")
    result = vae("interpolate", tmp_path / "colour.jpg", tmp_path / "colour.jpg", "--out", tmp_path / "o2.png")
    assert result.exit_code == 0 and result.output.count("converted RGB to L") == 1, result.output


@pytest.mark.parametrize("reference", ["test:-1", "test:128"])
def test_a_dataset_index_out_of_range_names_the_valid_range(vae, tiny_run, reference):
    result = vae("interpolate", reference, "test:0")
    assert result.exit_code == 2 and f"{reference}: the test split has 128 images (0..127)" in result.output


@pytest.mark.parametrize("contents, message", [
    (None, "no such file"),
    (lambda good: b"hello", "not an image file"),
    (lambda good: good[:200], "corrupt or truncated"),
])
def test_bad_interpolate_inputs_fail_cleanly_and_write_nothing(vae, tiny_run, tmp_path, contents, message):
    Image.effect_noise((64, 64), 50).save(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    if contents is not None:
        bad.write_bytes(contents((tmp_path / "good.png").read_bytes()))
    before = sorted(p.name for p in tiny_run.iterdir())
    result = vae("interpolate", tmp_path / "good.png", bad, "--out", tmp_path / "o.png")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.png").exists() and sorted(p.name for p in tiny_run.iterdir()) == before
