"""Whether an input looks like the images a model was trained on, and so which model to blend
it through.

A model blends only pictures like its training images: a moon sent through a digit model comes
back as a white blob, and the strip looks like a result. So after every epoch the trainer
describes each test image by a few numbers (`MEASURES`) and keeps them in the checkpoint
(`profile`); `vae interpolate` describes each input the same way and calls it unfamiliar when
it lies farther from the nearest test image than THRESHOLD_FACTOR times the distance that 99%
of the test images lie within from theirs (`judge`). That 99% point is measured steadily by a
few thousand images where the most remote 0.1% (the rule before) were one or two outliers,
which made the threshold loose: the built-in moons model let 5% of digits through. A test set
smaller than MIN_REFERENCES (the moons have 1,024) is topped up with training images, so the
nearest neighbours of new moons are as near as those of the test images. Looking at the numbers
together rather than one at a time matters: a new moon is a dark, noisy picture and a framed
patch of noise a grey, noisy one, and only brightness and roughness together tell them apart.
(benchmarks/familiarity.py also tried the 3rd, 5th and 10th nearest, whitened numbers and a
wider threshold: each missed more noise or more digits.)

The numbers, each standardised by its spread over the test images:
  reconstruction  log squared error of the reconstruction from the code: what the model cannot draw
  unexplained     log share of the picture's variance that the reconstruction misses
  code            log mean squared standardised distance of the code from the test codes'
  brightness      mean pixel
  contrast        log standard deviation of the pixels
  roughness       log mean difference between neighbouring pixels: noise is rough, a moon smooth

benchmarks/familiarity.py measures the false alarms on a run's own test images and the share
of other datasets, noise and flat pictures caught.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from . import builtin, evaluation, runs
from . import data as data_module
from .errors import VaeError

PROFILE_FORMAT = "vae-cli/familiarity/1"
MEASURES = {  # how a message names each number
    "reconstruction": "reconstruction error",
    "unexplained": "share of its variance the model cannot reconstruct",
    "code": "distance of its code from the test codes",
    "brightness": "brightness",
    "contrast": "contrast",
    "roughness": "roughness (pixel-to-pixel change)",
}
QUANTILE = 0.99        # of the references' distances to their nearest other reference...
THRESHOLD_FACTOR = 1.3  # ...times this is the threshold (benchmarks/familiarity.py chose it)
MIN_REFERENCES = 5000  # smaller test sets are topped up with training images (unconditional models)...
MAX_REFERENCES = 5000  # ...and larger ones subsampled, seeded
FLOOR = 1e-3        # added before taking logs: a flat picture has no contrast and no roughness
LEGACY_FACTOR = 3.0  # checkpoints from before profiles: unfamiliar above 3x the test set's 99% error


def measures(model, images: torch.Tensor, labels: torch.Tensor | None = None,
             code_stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The MEASURES of each image (N, C, H, W) in [0, 1], unstandardised: (N, len(MEASURES)),
    float64 on the CPU. The code distance is from `code_stats` (mean, standard deviation per
    code dimension), by default from these images' own codes."""
    codes, errors = evaluation.codes_and_squared_errors(model, images, labels=labels)
    return _measures(images, codes.double().cpu(), errors.double().cpu(), code_stats or _code_stats(codes))


def _code_stats(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    codes = codes.double().cpu()
    return codes.mean(0), codes.std(0) if len(codes) > 1 else torch.ones_like(codes[0])


def _measures(images, codes, errors, code_stats) -> torch.Tensor:
    mean, std = code_stats
    distance = ((codes - mean) / std.clamp(min=1e-6)).square().mean(1)
    pixels = data_module.as_float(images).double().cpu()
    roughness = ((pixels[..., 1:, :] - pixels[..., :-1, :]).abs().flatten(1).mean(1)
                 + (pixels[..., :, 1:] - pixels[..., :, :-1]).abs().flatten(1).mean(1)) / 2
    flat = pixels.flatten(1)
    contrast = flat.std(1)
    unexplained = (errors + FLOOR) / (contrast.square() * flat.shape[1] + FLOOR)
    return torch.stack([(errors + FLOOR).log(), unexplained.log(), (distance + FLOOR).log(),
                        flat.mean(1), (contrast + FLOOR).log(), (roughness + FLOOR).log()], dim=1)


def _nearest_distance(points: torch.Tensor, references: torch.Tensor, skip_self: bool = False) -> torch.Tensor:
    """Each point's distance to its nearest reference (not counting itself, if it is one), a
    thousand points at a time (5,000 x 5,000 distances at once would take 200 MB)."""
    k = min(1 + skip_self, len(references))
    return torch.cat([torch.cdist(part, references).topk(k, dim=1, largest=False).values[:, -1]
                      for part in points.split(1000)])


def training_top_up(config, test: torch.Tensor, train: torch.Tensor, conditional: bool) -> torch.Tensor | None:
    """Training images (a subset seeded by the run's seed) that bring a test set smaller than
    MIN_REFERENCES up to it, for `profile`'s `also`; None where the test set is large enough, the
    model conditional (the extra images have no label there) or the data binarized (inputs are
    judged grey, as the test images are reloaded for it)."""
    wanted = min(MIN_REFERENCES - len(test), len(train))
    if wanted <= 0 or conditional or config.data.binarize != "none":
        return None
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.train.seed))[:wanted]
    return data_module.as_float(train[rows.to(train.device)])


def also_familiar(config, test: torch.Tensor, train: torch.Tensor, conditional: bool) -> torch.Tensor | None:
    """What a run's profile holds besides its test images (`profile`'s `also`): the moons
    `vae moon` draws, and training images topping up a small test set; None if neither."""
    extra = [data_module.drawn_moons(config.data), training_top_up(config, test, train, conditional)]
    extra = [images.to(test.device) for images in extra if images is not None]
    return torch.cat(extra) if extra else None


def profile(model, images: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0,
            also: torch.Tensor | None = None) -> dict:
    """What `judge` compares inputs with, measured on a model's test images and the pictures
    `also` that it is meant to take besides (data.drawn_moons; unlabelled): tensors and plain
    numbers, stored in every checkpoint. The median and 99% point of the test images'
    reconstruction error are kept as well for `vae` versions that read only those."""
    images = data_module.as_float(images)
    test_errors = evaluation.squared_errors(model, images, labels=labels).double().cpu()
    if also is not None:
        images = torch.cat([images, also.to(images.device)])
        labels = None if labels is None else torch.cat([labels, labels[:1].expand(len(also))])
    codes, errors = evaluation.codes_and_squared_errors(model, images, labels=labels)
    codes, errors = codes.double().cpu(), errors.double().cpu()
    code_stats = _code_stats(codes)
    raw = _measures(images, codes, errors, code_stats)
    centre, scale = raw.mean(0), raw.std(0).clamp(min=1e-6) if len(raw) > 1 else torch.ones(raw.shape[1])
    points = (raw - centre) / scale
    if len(points) > MAX_REFERENCES:
        points = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:MAX_REFERENCES]]
    own = _nearest_distance(points, points, skip_self=True)
    return {"format": PROFILE_FORMAT, "code_mean": code_stats[0], "code_std": code_stats[1],
            "centre": centre, "scale": scale, "references": points.float(),
            "threshold": float(THRESHOLD_FACTOR * own.quantile(QUANTILE)),
            "median": float(test_errors.median()), "p99": float(test_errors.quantile(0.99))}


def remoteness(model, images: torch.Tensor, profile: dict, labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, its distance to the nearest test image divided by the profile's threshold
    (above 1: unfamiliar), its standardised measures, and those of that nearest test image."""
    points = (measures(model, images, labels, (profile["code_mean"], profile["code_std"]))
              - profile["centre"]) / profile["scale"]
    references = profile["references"].double()
    distances = torch.cdist(points, references)
    return distances.min(1).values / profile["threshold"], points, references[distances.argmin(1)]


def unfamiliar(model, images: torch.Tensor, profile: dict, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each image is unfamiliar to the model: (N,) bool. A checkpoint from before
    profiles is judged by its reconstruction error alone, as it was then."""
    if profile.get("format") != PROFILE_FORMAT:
        return evaluation.squared_errors(model, images, labels=labels).cpu() > LEGACY_FACTOR * profile["p99"]
    return remoteness(model, images, profile, labels)[0] > 1


def test_images_as_inputs(config, test: torch.Tensor) -> torch.Tensor:
    """A run's test images as `vae interpolate` would read them: a binarized run's test split
    loaded again without binarizing (files are never binarized), else `test` itself."""
    if config.data.binarize == "none":
        return test
    return data_module.load(dataclasses.replace(config.data, binarize="none"), test.device).test


def profile_of(checkpoint: dict) -> dict | None:
    """The profile a checkpoint holds: this module's, or an older checkpoint's error profile."""
    return checkpoint.get("familiarity") or checkpoint.get("test_error")


def judge(model, image: torch.Tensor, profile: dict | None, label: torch.Tensor | None = None) -> str | None:
    """Why the model will blend `image` (C, H, W) poorly, in words, or None if it looks like
    the model's test images (or the checkpoint holds no profile to judge by)."""
    if not profile:
        return None
    advice = "expect a poor blend; frame it like the training images or train on pictures like it"
    if profile.get("format") != PROFILE_FORMAT:
        error = float(evaluation.squared_errors(model, image.unsqueeze(0), labels=label)[0])
        if error <= LEGACY_FACTOR * profile["p99"]:
            return None
        return (f"unlike the training images (reconstruction error {error:.2f}, {error / profile['median']:.0f}x "
                f"the test set's typical {profile['median']:.2f}): {advice}")
    amount, point, nearest = remoteness(model, image.unsqueeze(0), profile, label)
    if float(amount[0]) <= 1:
        return None
    names = list(MEASURES)
    most = names[int((point[0] - nearest[0]).abs().argmax())]
    return (f"unlike the training images ({float(amount[0]):.1f}x as far from them as the test images "
            f"are, most in its {MEASURES[most]}): {advice}")


@dataclass
class Choice:
    """The model `vae interpolate` blends through, its inputs read for it, what to say first on
    stdout (`note`) and on stderr (`warnings`), and the label to encode and decode with."""
    run: runs.LoadedRun
    images: list[torch.Tensor]
    label: torch.Tensor | None
    note: str | None
    warnings: list[str]


def _read(loaded: runs.LoadedRun, references: list[str], label_for) -> tuple[list, torch.Tensor | None, list[str], list[str]]:
    """(images, label, notes on reading them, why each unfamiliar one is) for one model."""
    notes = []
    images = data_module.load_references(references, loaded.config.data, on_note=notes.append)
    label = label_for(loaded)
    device = loaded.model.device
    reasons = [f"{reference}: {reason}" for reference, image in zip(references, images)
               if (reason := judge(loaded.model, image.to(device), profile_of(loaded.checkpoint), label)) is not None]
    return images, label, notes, reasons


def choose_model(run: Path | None, references: list[str], which: str, device, label_for) -> Choice:
    """The model to blend `references` through. A run named with --run is used whatever the
    inputs are (with a warning for each unfamiliar one). Without --run: the latest run, unless
    an input is unlike its training images and every input is like the built-in moons model's,
    and the built-in moons model when there is no run yet (if the inputs are like its pictures).
    `label_for(run)` gives the label a run encodes with (None for unconditional runs), or
    refuses; a blend with a label is never moved to another model."""
    moons_model = Path(builtin.names()[0])
    if run is None and runs.latest_run() is None:
        loaded = runs.load_run(moons_model, "best", device)
        images, label, notes, reasons = _read(loaded, references, label_for)
        if reasons:
            raise VaeError(f"{runs.no_runs_error()}; and the built-in moons model does not know these inputs "
                           f"({reasons[0]})".replace(": expect a poor blend", ""))
        return Choice(loaded, images, label, f"no runs yet in {runs.runs_root()}: blending with the built-in "
                      f"moons model (--run {moons_model}); `vae train` makes your own", notes)
    loaded = runs.load_run(run, which, device)
    images, label, notes, reasons = _read(loaded, references, label_for)
    if run is None and reasons and label is None and not builtin.is_builtin(loaded.name):
        alternative = runs.load_run(moons_model, "best", device)
        alt_images, _, alt_notes, alt_reasons = _read(alternative, references, lambda _: None)
        if not alt_reasons:
            switched = (f"{', '.join(references)} look unlike the training images of {loaded.name} and like the "
                        f"built-in moons model's: blended through {moons_model} instead (to use {loaded.name} "
                        f"anyway: --run {loaded.name})")
            return Choice(alternative, alt_images, None, None, alt_notes + [switched])
    return Choice(loaded, images, label, None, notes + reasons)
