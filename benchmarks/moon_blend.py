"""Which moons default blends a person's own moon pictures best, at what training cost. Run by
hand (not a test):

    nice -n 10 .venv/bin/python benchmarks/moon_blend.py [--seeds 0 1] [--variant NAME ...]

Each variant is the default moons config with a few keys changed; it is trained once per seed,
in this process, one after the other, so that compare timings only within one run (the
machine may be shared). Inputs come from the independent renderer in tests/photo_moons.py
(scenes lit from the right and the left, 200 to 1000 px, JPEG and PNG, small to big moons),
read the way `vae interpolate` reads them. Per variant it prints the training seconds, and for
linear and slerp interpolation the midpoint's squared error to the renderer's three-quarter
moon divided by the pixel cross-fade's (below 1: better than blending pixels), the worst
scene's ratio, and the decoded midpoint's lit fraction (a three-quarter moon is 0.75).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import photo_moons  # noqa: E402
from vae_cli import config as config_module, data, latent, models, training  # noqa: E402

VARIANTS = {
    "28-mlp-crop": [],
    "28-mlp-nocrop": ["data.crop=none"],
    "28-mlp-clean": ["data.moons=clean"],
    "32-mlp-crop": ["data.image_size=32"],
    "32-conv-crop": ["data.image_size=32", "model.network=conv", "model.hidden=[32,64]"],
    "64-conv-crop": ["data.image_size=64", "model.network=conv", "model.hidden=[16,32,64]"],
}


def score(model, config, scenes: dict) -> dict:
    """Per method: midpoint/cross-fade error ratio per scene, and lit fractions."""
    result = {}
    for method in ("linear", "slerp"):
        ratios, fractions = [], []
        for paths in scenes.values():
            full, half, reference = data.load_references(
                [str(paths["full"]), str(paths["half"]), str(paths["three_quarter"])], config.data)
            strip = latent.interpolation_strip(model, full, half, 3, method)
            decoded = float(((strip[1] - reference) ** 2).mean())
            crossfade = float(((0.5 * (full + half) - reference) ** 2).mean())
            ratios.append(decoded / crossfade)
            fractions.append(photo_moons.lit_fraction(strip[1], strip[0]))
        result[method] = (ratios, fractions)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        scenes = {scene[0]: photo_moons.write_scene(Path(folder), *scene) for scene in photo_moons.SCENES}
        print(f"{'variant':16} {'train s':>8} {'method':7} {'mean ratio':>10} {'worst':>6} {'lit frac':>8}  per scene")
        for name in args.variant:
            rows = {method: ([], []) for method in ("linear", "slerp")}
            seconds = []
            for seed in args.seeds:
                config = config_module.load(None, VARIANTS[name] + args.set + [f"train.seed={seed}"])
                run_dir = Path(folder) / f"{name}-{seed}"
                started = time.perf_counter()
                with open("/dev/null", "w"):
                    training.train(config, run_dir)
                seconds.append(time.perf_counter() - started)
                model = models.build(config)
                model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
                for method, (ratios, fractions) in score(model.eval(), config, scenes).items():
                    rows[method][0].append(ratios)
                    rows[method][1].extend(fractions)
            for method, (ratios, fractions) in rows.items():
                per_scene = [statistics.mean(r[i] for r in ratios) for i in range(len(scenes))]
                print(f"{name:16} {statistics.mean(seconds):8.1f} {method:7} {statistics.mean(per_scene):10.2f} "
                      f"{max(max(r) for r in ratios):6.2f} {statistics.mean(fractions):8.2f}  "
                      + " ".join(f"{r:.2f}" for r in per_scene), flush=True)


if __name__ == "__main__":
    main()
