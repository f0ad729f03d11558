"""Issues 11 and 21's acceptance tests: moon-style blending on pictures the tool was not trained on.

The shipped default config is trained with three seeds, exactly as `vae train` would, once for
this module; the inputs come from the independent renderer in tests/photo_moons.py (its own
sphere shading, surface and sky; 200 to 1000 px, RGB, JPEG and PNG), with the sun on the right
(waxing) and on the left (waning); `vae interpolate --individual` blends full
and half moon and writes the midpoint, which must be closer to the renderer's three-quarter
moon than the pixel cross-fade is, by a clear margin, at the model's resolution.
"""

import statistics

import pytest
from typer.testing import CliRunner

import photo_moons
from vae_cli import data, images, runs
from vae_cli.cli import app

SEEDS = (0, 1, 2)
MARGIN = 0.8  # untilted: each side's mean squared error at most this times the cross-fade's


def vae(runs_dir, *args):
    result = CliRunner().invoke(app, [str(a) for a in args], env={"VAE_RUNS": str(runs_dir)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{seed: run folder} of the default config, each seed trained once for every test here."""
    runs_dir = tmp_path_factory.mktemp("runs")
    for seed in SEEDS:
        vae(runs_dir, "train", "--set", f"train.seed={seed}", "--name", f"seed{seed}")
    return {seed: runs_dir / f"seed{seed}" for seed in SEEDS}


def pixel_mse(a, b):
    return float(((a - b) ** 2).mean())


def blend(run_dir, paths, out):
    """`vae interpolate full half --steps 3 --individual` through the run: its score against the
    cross-fade, the midpoint's lit fraction and the decoded half's (both against the decoded full)."""
    result = vae(run_dir.parent, "interpolate", paths["full"], paths["half"], "--run", run_dir, "--steps", 3,
                 "--individual", "--out", out)
    assert "unlike the training images" not in result.output  # they look like moons to it
    run_config = runs.load_model(run_dir)[0]
    decoded = [data.as_float(images.read_image(out.with_suffix("") / f"t{t}.png", 1, run_config.data.image_size)[0])
               for t in ("0.000", "0.500", "1.000")]
    full, half, three_quarter = data.load_references(
        [str(paths[label]) for label in ("full", "half", "three_quarter")], run_config.data)
    ratio = pixel_mse(decoded[1], three_quarter) / pixel_mse(0.5 * (full + half), three_quarter)
    return ratio, photo_moons.lit_fraction(decoded[1], decoded[0]), photo_moons.lit_fraction(decoded[2], decoded[0])


@pytest.mark.slow
def test_photo_moons_blend_through_gibbous_moons_from_either_side(trained, tmp_path):
    ratios = {}  # (sun angle, seed): ratio per scene
    report = []
    for seed, run_dir in trained.items():
        for scene in photo_moons.SCENES:
            name, sun_angle = scene[:2]
            ratio, lit, _ = blend(run_dir, photo_moons.write_scene(tmp_path, *scene), tmp_path / f"{name}-{seed}.png")
            ratios.setdefault((sun_angle, seed), []).append(ratio)
            report.append(f"seed {seed} {name}: midpoint/cross-fade error {ratio:.2f}, lit fraction {lit:.2f}")
            assert 0.6 < lit < 0.9, report[-1]  # a gibbous moon, neither the full nor the half one
    print("\n".join(report))
    for sun_angle in (0, 180):
        per_seed = [statistics.mean(ratios[sun_angle, seed]) for seed in SEEDS]
        print(f"sun at {sun_angle} degrees: mean ratio per seed " + ", ".join(f"{r:.2f}" for r in per_seed))
        assert max(per_seed) <= MARGIN, (sun_angle, per_seed)

