"""Which moons default blends a person's own moon pictures best, at what training cost. Run by
hand (not a test):

    nice -n 10 .venv/bin/python benchmarks/moon_blend.py [--seeds 0 1 2] [--variant NAME ...] [--threads 1]

Each variant is the default moons config with a few keys changed; it is trained once per seed,
in this process, one after the other, so compare timings only within one run (the machine may
be shared): each variant's training time is also printed as a ratio to the first variant's in
the same run, with the load average (`uptime`'s first figure) beside it. Inputs come from the
independent renderer in tests/photo_moons.py (200 to 1000 px, JPEG and PNG, small to big
moons), read the way `vae interpolate` reads them: the straight scenes (the sun on the right,
waxing, and on the left, waning) and the tilted ones (the terminator tilted 0, 30, 60, 90, 135
and 200 degrees, each waxing and waning; what tests/test_photo_blending.py tests). Per variant,
for slerp (`vae interpolate`'s default), the midpoint's squared error to the renderer's
three-quarter moon divided by the pixel cross-fade's (below 1: better than blending pixels):
the mean over seeds and straight scenes, the mean over seeds and tilted pairs, the worst tilted
pair and seed, and the share of tilted pairs and seeds that pass the test (ratio at most 0.6,
the midpoint's lit fraction 0.75 +/- 0.07 and the decoded half's 0.5 +/- 0.07, both by
photo_moons.lit_fraction against the decoded full moon); the mean lit fractions; the same ratio
on clean moons as `vae moon` draws them; last the share of 1000 random samples that lie off the
data (farther, in L2, from every training moon's reconstruction than 99% of samples from the
test moons' posteriors are), with codes from the prior (`vae sample --sampler prior`) and from
the Gaussian mixture fitted to the training codes (`--sampler gmm`).

With --pictures DIR it also draws the docs' pictures there from the first variant's first
seed: photo_moon_inputs.png (the input files of a few tilted scenes) and
interpolate_photo_moons.png (each one's 11-step slerp strip and pixel cross-fade).
"""

import argparse
import contextlib
import io
import os
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
from vae_cli import device as device_module  # noqa: E402

VARIANTS = {
    "default": [],
    "28-z4": ["data.image_size=28", "model.hidden=[16,32]", "model.latent_dim=4", "train.epochs=10"],  # before #21
    "28-z8": ["data.image_size=28", "model.hidden=[16,32]", "model.latent_dim=8", "train.epochs=10"],
    "28-z8-w32": ["data.image_size=28", "model.hidden=[32,64]", "model.latent_dim=8", "train.epochs=10"],
    "28-z8-e15": ["data.image_size=28", "model.hidden=[16,32]", "model.latent_dim=8", "train.epochs=15"],
    "48-z8": ["data.image_size=48", "model.hidden=[16,32,64]", "model.latent_dim=8", "train.epochs=10"],
    "64-z4": ["data.image_size=64", "model.hidden=[16,32,64]", "model.latent_dim=4", "train.epochs=10"],
    "64-z8": ["data.image_size=64", "model.hidden=[16,32,64]", "model.latent_dim=8", "train.epochs=10"],
    "64-z8-narrow": ["data.image_size=64", "model.hidden=[8,16,32]", "model.latent_dim=8", "train.epochs=10"],
    "64-z8-deep": ["data.image_size=64", "model.hidden=[16,32,64,64]", "model.latent_dim=8", "train.epochs=10"],
    "64-z16": ["data.image_size=64", "model.hidden=[16,32,64]", "model.latent_dim=16", "train.epochs=10"],
    "64-z8-e20": ["data.image_size=64", "model.hidden=[16,32,64]", "model.latent_dim=8", "train.epochs=20"],
}
TILTED_MARGIN, LIT_TOLERANCE = 0.6, 0.07  # tests/test_photo_blending.py's bounds
PICTURED_SCENES = ("tilt30-waxing", "tilt90-waning", "tilt135-waxing", "tilt200-waning")


def score(model, config, scenes: dict) -> dict:
    """Per scene: (midpoint/cross-fade error ratio, the midpoint's lit fraction, the decoded half's)."""
    result = {}
    for name, paths in scenes.items():
        full, half, reference = data.load_references(
            [str(paths["full"]), str(paths["half"]), str(paths["three_quarter"])], config.data)
        strip = latent.interpolation_strip(model, full, half, 3, "slerp")
        decoded = float(((strip[1] - reference) ** 2).mean())
        crossfade = float(((0.5 * (full + half) - reference) ** 2).mean())
        result[name] = (decoded / crossfade, photo_moons.lit_fraction(strip[1], strip[0]),
                        photo_moons.lit_fraction(strip[2], strip[0]))
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
    mixture = samplers.fit_gmm(samplers.training_codes(model, moons_data), seed=config.train.seed)[0]
    return {name: float((nearest(latent.sample_images(model, 1000, seed=0, sampler=sampler)) > limit).float().mean())
            for name, sampler in (("prior", None), ("gmm", mixture))}


def write_pictures(model, config, scenes: dict, folder: Path) -> None:
    """The docs' pictures of a few tilted scenes (see the module's description)."""
    inputs, strips = [], []
    for name in PICTURED_SCENES:
        paths = scenes[name]
        files = [TF.pil_to_tensor(Image.open(paths[label]).convert("RGB").resize((160, 160), Image.LANCZOS)) / 255
                 for label in ("full", "three_quarter", "half")]
        inputs.append((f"{name}\nfull, 3/4, half", torch.stack(files)))
        full, half = data.load_references([str(paths["full"]), str(paths["half"])], config.data)
        t = torch.linspace(0, 1, 11).view(-1, 1, 1, 1)
        strips.append((f"{name}\nVAE, slerp", torch.cat([full[None], latent.interpolation_strip(
            model, full, half, 11, "slerp"), half[None]])))
        strips.append((f"{name}\npixel cross-fade", torch.cat([full[None], (1 - t) * full + t * half, half[None]])))
    images.save_labeled_rows(inputs, folder / "photo_moon_inputs.png", scale=1)
    images.save_labeled_rows(strips, folder / "interpolate_photo_moons.png", scale=max(1, 56 // config.data.image_size))


def write_scenes(folder: Path) -> tuple[dict, list[str], list[str]]:
    """Every scene's files, the names of the straight scenes and those of the tilted ones."""
    straight, tilted = photo_moons.SCENES, photo_moons.tilted_scenes()
    scenes = {scene[0]: photo_moons.write_scene(folder, *scene) for scene in straight + tilted}
    scenes["clean"] = {label: images.save_grid(moons.render_one(phase, 128).unsqueeze(0),
                                               folder / f"clean-{label}.png", padding=0)
                       for label, phase in photo_moons.PHASES.items()}  # as `vae moon` draws them
    return scenes, [scene[0] for scene in straight], [scene[0] for scene in tilted]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-samples", action="store_true", help="skip the off-data measure (it renders the data again)")
    parser.add_argument("--pictures", type=Path, help="folder for the docs' pictures (e.g. docs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        scenes, straight, tilted = write_scenes(Path(folder))
        print(f"{'variant':14} {'train s':>7} {'x first':>7} {'load':>5} {'straight':>8} {'tilted':>6} {'worst':>5} "
              f"{'pass':>5} {'lit 3/4':>7} {'lit 1/2':>7} {'clean':>5} {'off: prior':>10} {'gmm':>4}", flush=True)
        first_seconds = None
        for name in args.variant:
            seconds, loads, scored, off = [], [], [], []
            for seed in args.seeds:
                config = config_module.load(None, VARIANTS[name] + args.set + [f"train.seed={seed}"])
                run_dir = Path(folder) / f"{name}-{seed}"
                started = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    training.train(config, run_dir, device_module.choose(config.train.device))
                seconds.append(time.perf_counter() - started)
                loads.append(os.getloadavg()[0])
                model = models.build(config)
                model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"])
                model.eval()
                with contextlib.redirect_stderr(io.StringIO()):  # the RGB-to-grayscale notes
                    scored.append(score(model, config, scenes))
                    if not args.no_samples:
                        off.append(off_data(model, config))
                    if args.pictures and name == args.variant[0] and seed == args.seeds[0]:
                        write_pictures(model, config, scenes, args.pictures)
            first_seconds = first_seconds or statistics.mean(seconds)
            tilted_runs = [one[scene] for one in scored for scene in tilted]
            passed = [ratio <= TILTED_MARGIN and abs(lit - 0.75) <= LIT_TOLERANCE and abs(half - 0.5) <= LIT_TOLERANCE
                      for ratio, lit, half in tilted_runs]
            sampled = (f"{statistics.mean(o['prior'] for o in off):10.1%} {statistics.mean(o['gmm'] for o in off):4.1%}"
                       if off else f"{'-':>10} {'-':>4}")
            print(f"{name:14} {statistics.mean(seconds):7.1f} {statistics.mean(seconds) / first_seconds:7.2f} "
                  f"{statistics.mean(loads):5.1f} "
                  f"{statistics.mean(one[scene][0] for one in scored for scene in straight):8.2f} "
                  f"{statistics.mean(r[0] for r in tilted_runs):6.2f} {max(r[0] for r in tilted_runs):5.2f} "
                  f"{sum(passed):2}/{len(passed):2} {statistics.mean(r[1] for r in tilted_runs):7.2f} "
                  f"{statistics.mean(r[2] for r in tilted_runs):7.2f} "
                  f"{statistics.mean(one['clean'][0] for one in scored):5.2f} {sampled}", flush=True)


if __name__ == "__main__":
    main()
