"""Which moons default blends a person's own moon pictures best, at what training cost. Run by
hand (not a test):

    nice -n 10 .venv/bin/python benchmarks/moon_blend.py [--seeds 0 1 2] [--variant NAME ...] [--threads 1]

Each variant is the default moons config with a few keys changed; it is trained once per seed,
in this process, one after the other, so that compare timings only within one run (the
machine may be shared). Inputs come from the independent renderer in tests/photo_moons.py
(scenes lit from the right and the left, 200 to 1000 px, JPEG and PNG, small to big moons),
read the way `vae interpolate` reads them. Per variant it prints the training seconds, and for
linear and slerp interpolation the midpoint's squared error to the renderer's three-quarter
moon divided by the pixel cross-fade's (below 1: better than blending pixels): the mean over
seeds and scenes lit from the right (waxing) and from the left (waning), the worst seed's mean
for one side (what tests/test_photo_blending.py bounds by 0.8), and the decoded midpoint's lit
fraction (photo_moons.lit_fraction; the renderer's own three-quarter moon gives 0.70 to 0.74);
then the ratio on clean moons as `vae moon` draws them; last the share of 1000 random samples
that lie off the data (farther, in L2, from every training moon's reconstruction than 99% of
samples from the test moons' posteriors are), with codes from the prior (`vae sample`) and
from the Gaussian mixture fitted to the training codes (`vae sample --sampler gmm`). With --pictures DIR it also draws the
README's pictures there from the first variant's first seed: photo_moon_inputs.png (the input
files) and interpolate_photo_moons.png (each scene's 11-step slerp strip and pixel cross-fade).
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import photo_moons  # noqa: E402
from vae_cli import config as config_module, data, images, latent, models, moons, samplers, training  # noqa: E402

VARIANTS = {
    "28-conv-crop": [],  # the default
    "28-conv-z2": ["model.latent_dim=2"],
    "28-conv-nocrop": ["data.crop=none"],
    "28-conv-clean": ["data.moons=clean"],
    "28-mlp-crop": ["model.network=mlp", "model.hidden=[400]", "train.epochs=20"],  # the default until #11
    "32-conv-crop": ["data.image_size=32"],
    "64-conv-crop": ["data.image_size=64", "model.hidden=[8,16,32]"],
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


@torch.inference_mode()
def off_data(model, config) -> dict[str, float]:
    """Per sampler (prior, gmm), the share of its samples farther from every reconstructed
    training moon than 99% of posterior samples of test moons: codes that no training moon's
    posterior reaches decode to textured blobs."""
    moons_data = data.load(config.data)
    train, test = moons_data.split("train")[0], moons_data.split("test")[0]
    reconstructions = torch.cat([model.reconstruct(part) for part in train.split(1024)]).flatten(1)
    mean, log_scale = model.encode(test)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    posterior = model.decode_image(mean + log_scale.exp() * noise).flatten(1)

    def nearest(samples):
        return torch.cdist(samples.flatten(1), reconstructions).min(1).values

    limit = nearest(posterior).quantile(0.99)
    mixture = samplers.fit_gmm(samplers.training_codes(model, moons_data))[0]
    return {name: float((nearest(latent.sample_images(model, 1000, seed=0, sampler=sampler)) > limit).float().mean())
            for name, sampler in (("prior", None), ("gmm", mixture))}


def write_pictures(model, config, scenes: dict, folder: Path) -> None:
    """The README's pictures of the photo-like scenes (see the module's description)."""
    inputs, strips = [], []
    for name, paths in scenes.items():
        if name == "clean":
            continue
        files = [TF.pil_to_tensor(Image.open(paths[label]).convert("RGB").resize((160, 160), Image.LANCZOS)) / 255
                 for label in ("full", "three_quarter", "half")]
        inputs.append((f"{name}\nfull, 3/4, half", torch.stack(files)))
        full, half = data.load_references([str(paths["full"]), str(paths["half"])], config.data)
        t = torch.linspace(0, 1, 11).view(-1, 1, 1, 1)
        strips.append((f"{name}\nVAE, slerp", torch.cat([full[None], latent.interpolation_strip(
            model, full, half, 11, "slerp"), half[None]])))
        strips.append((f"{name}\npixel cross-fade", torch.cat([full[None], (1 - t) * full + t * half, half[None]])))
    images.save_labeled_rows(inputs, folder / "photo_moon_inputs.png", scale=1)
    images.save_labeled_rows(strips, folder / "interpolate_photo_moons.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pictures", type=Path, help="folder for the README's pictures (e.g. docs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        scenes = {scene[0]: photo_moons.write_scene(Path(folder), *scene) for scene in photo_moons.SCENES}
        scenes["clean"] = {label: images.save_grid(moons.render_one(phase, 28).unsqueeze(0),
                                                   Path(folder) / f"clean-{label}.png", padding=0)
                           for label, phase in photo_moons.PHASES.items()}  # as `vae moon` draws them
        sides = [scene[1] for scene in photo_moons.SCENES] + ["clean"]
        print(f"{'variant':16} {'train s':>8} {'method':7} {'waxing':>7} {'waning':>7} {'worst':>6} {'lit frac':>8} "
              f"{'clean':>6} {'off data: prior':>15} {'gmm':>4}")
        for name in args.variant:
            rows = {method: ({"right": [], "left": [], "clean": []}, []) for method in ("linear", "slerp")}
            seconds, off = [], []
            for seed in args.seeds:
                config = config_module.load(None, VARIANTS[name] + args.set + [f"train.seed={seed}"])
                run_dir = Path(folder) / f"{name}-{seed}"
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    training.train(config, run_dir)
                seconds.append(time.perf_counter() - started)
                model = models.build(config)
                model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
                with contextlib.redirect_stderr(io.StringIO()):  # the RGB-to-grayscale notes
                    scored = score(model.eval(), config, scenes)
                    off.append(off_data(model, config))
                    if args.pictures and name == args.variant[0] and seed == args.seeds[0]:
                        write_pictures(model, config, scenes, args.pictures)
                for method, (ratios, fractions) in scored.items():
                    for side in ("right", "left", "clean"):
                        rows[method][0][side].append(statistics.mean(r for r, s in zip(ratios, sides) if s == side))
                    rows[method][1].extend(fractions[:-1])
            for method, (per_side, fractions) in rows.items():
                print(f"{name:16} {statistics.mean(seconds):8.1f} {method:7} {statistics.mean(per_side['right']):7.2f} "
                      f"{statistics.mean(per_side['left']):7.2f} {max(per_side['right'] + per_side['left']):6.2f} "
                      f"{statistics.mean(fractions):8.2f} {statistics.mean(per_side['clean']):6.2f} "
                      f"{statistics.mean(o['prior'] for o in off):15.0%} {statistics.mean(o['gmm'] for o in off):4.0%}",
                      flush=True)


if __name__ == "__main__":
    main()
