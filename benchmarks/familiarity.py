"""How reliable the unfamiliar-input check is (vae_cli/familiarity.py). Run by hand (not a test):

    nice -n 10 .venv/bin/python benchmarks/familiarity.py RUN [RUN ...] [--n 1000]

RUN is a run folder or builtin:moons. MNIST and Fashion-MNIST come from $VAE_DATA (or ./data).
For each run it prints the share of pictures flagged as unfamiliar, and what decides it (the
distance to the nearest test image over the profile's threshold; flagged above 1) at its 1%,
50% and 99% points:

  own test, other half  the run's own test images, judged by a profile of the other half of the
                        test set (so no image judges itself): the false-alarm rate; goal <= 1%
  own test, stored      the same against the profile stored in the checkpoint (all test images,
                        so in-sample)
  fresh moons           moons runs only: new moons from an unused seed against the stored profile
  photo moons, clean moons, digits, fashion, uniform noise, gaussian noise, flat
                        n pictures each, written as PNG files and read back the way `vae
                        interpolate` reads its inputs; goal >= 99% flagged wherever they are not
                        the run's own kind (digits for an MNIST run, moons for a moons run)

A run that `vae interpolate` compares with the built-in moons model (a known dataset of other
pictures: familiarity.comparable_with_builtin) has a second column: the share it treats as not
this run's, unfamiliar to it or taken as the built-in model's (familiarity.belongs_to_builtin).

It also prints the machine's load: the numbers do not depend on it, only the time does.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vae_cli import config as config_module  # noqa: E402
from vae_cli import builtin, data, familiarity, moons, runs  # noqa: E402
from vae_cli.images import save_each  # noqa: E402

FRESH_MOONS_SEED = 99  # the moons dataset renders its splits from seeds 1 and 2


def foreign_sets(n: int, data_root: Path) -> dict[str, torch.Tensor]:
    """Pictures a run may be shown, as (n, 1, H, W) in [0, 1], at the size they are drawn."""
    g = torch.Generator().manual_seed(1)  # not the profile's seed 0: its references are a seeded subset
    photo = config_module.load(None).data  # the default moons, as the built-in model trains on them
    sets = {"photo moons": data.render_moons(photo, n, FRESH_MOONS_SEED)[0],
            "clean moons": moons.sample(n, 64, FRESH_MOONS_SEED)[0]}
    for name, dataset in (("digits", "mnist"), ("fashion", "fashion-mnist")):
        try:
            test = data.load(config_module.from_dict({"data": {"name": dataset, "root": str(data_root)}}, dataset).data).test
            sets[name] = data.as_float(test[torch.randperm(len(test), generator=g)[:n]])
        except Exception as error:  # a missing dataset leaves its row out, with the reason
            print(f"({name} left out: {error})")
    sets["uniform noise"] = torch.rand(n, 1, 64, 64, generator=g)
    sets["gaussian noise"] = (0.5 + 0.2 * torch.randn(n, 1, 64, 64, generator=g)).clamp(0, 1)
    sets["flat"] = torch.linspace(0, 1, n).view(n, 1, 1, 1).expand(n, 1, 64, 64).contiguous()
    return sets


def as_inputs(images: torch.Tensor, config, folder: Path) -> torch.Tensor:
    """The pictures written as PNG files and read back as `vae interpolate` reads its inputs."""
    names = [f"{i:05d}.png" for i in range(len(images))]
    save_each(images, folder, names)
    return torch.stack(data.load_references([str(folder / name) for name in names], config.data,
                                            on_note=lambda note: None))


def row(name: str, amounts: torch.Tensor, builtin_amounts: torch.Tensor | None = None) -> None:
    flagged = float((amounts > 1).double().mean())
    q = amounts.quantile(torch.tensor([0.01, 0.5, 0.99], dtype=amounts.dtype)).tolist()
    line = f"  {name:24s} {len(amounts):6d}  {100 * flagged:6.1f}%   {q[0]:8.2f} {q[1]:8.2f} {q[2]:8.2f}"
    if builtin_amounts is not None:
        not_its = (amounts > 1) | familiarity.belongs_to_builtin(amounts, builtin_amounts, comparable=True)
        line += f"   {100 * float(not_its.double().mean()):6.1f}%"
    print(line, flush=True)


def builtin_distances(moons_model, images: torch.Tensor, folder: Path) -> torch.Tensor:
    """The built-in moons model's familiarity.relative_distances to pictures read as its inputs."""
    inputs = as_inputs(images, moons_model.config, folder)
    return familiarity.relative_distances(moons_model.model, inputs, familiarity.profile_of(moons_model.checkpoint))


def check_run(run: str, sets: dict, n: int) -> None:
    loaded = runs.load_run(Path(run))
    model, config, profile = loaded.model, loaded.config, loaded.checkpoint.get("familiarity")
    moons_model = runs.load_run(Path(builtin.names()[0]))
    compared = not model.conditional and familiarity.comparable_with_builtin(loaded, moons_model)
    loaded_data = data.load(config.data)
    test, labels = loaded_data.split("test")
    test = familiarity.test_images_as_inputs(config, test)
    labels = labels if model.conditional else None

    def also_familiar(test_part):  # as the Trainer builds it
        return familiarity.also_familiar(config, test_part, loaded_data.train, model.conditional)

    if profile is None or profile.get("format") != familiarity.PROFILE_FORMAT:  # trained before: measured now, as training would
        profile = familiarity.profile(model, test, labels, also=also_familiar(test))
    print(f"{loaded.name} ({config.data.name}, {config.model.kind}, {config.data.image_size} px, "
          f"{len(test)} test images)")
    print(f"  {'pictures':24s} {'n':>6s}  flagged   distance / threshold: 1%, 50%, 99%"
          + ("   or nearer builtin:moons" if compared else ""))
    halves = [torch.arange(len(test))[i::2] for i in (0, 1)]
    held_out = []
    for judged, profiled in ((halves[0], halves[1]), (halves[1], halves[0])):
        part = (lambda rows: None if labels is None else labels[rows])
        half_profile = familiarity.profile(model, test[profiled], part(profiled), also=also_familiar(test[profiled]))
        held_out.append(familiarity.remoteness(model, test[judged], half_profile, part(judged))[0])
    held_out = torch.cat(held_out)
    with tempfile.TemporaryDirectory() as folder:
        order = torch.cat(halves)
        row("own test, other half", held_out,
            builtin_distances(moons_model, data.as_float(test[order]), Path(folder)) if compared else None)
    row("own test, stored", familiarity.remoteness(model, test, profile, labels)[0])
    if config.data.name == "moons":
        row("fresh moons", familiarity.remoteness(model, data.render_moons(config.data, n, FRESH_MOONS_SEED)[0], profile)[0])
    if model.conditional:
        return  # a conditional run judges an input with a label; the sets below have none
    with tempfile.TemporaryDirectory() as folder:
        for name, images in sets.items():
            inputs = as_inputs(images, config, Path(folder) / name.replace(" ", "_"))
            row(name, familiarity.remoteness(model, inputs, profile)[0],
                builtin_distances(moons_model, images, Path(folder) / (name.replace(" ", "_") + "_builtin"))
                if compared else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders, or builtin:moons")
    parser.add_argument("--n", type=int, default=1000, help="pictures per foreign set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; threshold {familiarity.THRESHOLD_FACTOR} x "
          f"the {familiarity.QUANTILE:.0%} point of the references' nearest-neighbour distances")
    started = time.perf_counter()
    with contextlib.redirect_stderr(open(os.devnull, "w")):
        sets = foreign_sets(args.n, data.data_root(config_module.load(None).data))
    for run in args.runs:
        check_run(run, sets, args.n)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
