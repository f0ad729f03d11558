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
  edge direction  how much the picture's edges run one way rather than every way
  edge alignment  how much they run along the frame's sides rather than diagonally

The two edge numbers are there because a moon's limb is a circle: its edges run every way, at
any angle of the sun, while clothes and digits stand upright in their frames. With them the
built-in moons model flags 99% of digits instead of 98% (docs/builtin.md).

A run trained on a known dataset of other pictures than the built-in moons model (MNIST,
Fashion-MNIST; not moons, not a folder of one's own) is also compared with it (`choose_model`):
an input familiar to the built-in model and nearer its pictures than the run's, each distance in
units of its model's threshold, is taken as the built-in model's. This is what catches the moons
a Fashion-MNIST run takes for dark dresses and bags (a fifth of them by its own threshold alone).
Labelled blends and a run's own dataset images (test:7) never move.

benchmarks/familiarity.py measures the false alarms on a run's own test images and the share
of other datasets, noise and flat pictures caught.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from . import builtin, datasets, evaluation, runs
from . import data as data_module
from . import references as references_module
from .errors import VaeError

PROFILE_FORMAT = "vae-cli/familiarity/2"
# /1 held the first six MEASURES (before the edge numbers); vae versions that know only /1 read
# /2 as an older profile and fall back to the reconstruction-error rule rather than fail.
PROFILE_FORMATS = ("vae-cli/familiarity/1", PROFILE_FORMAT)
MEASURES = {  # how a message names each number
    "reconstruction": "reconstruction error",
    "unexplained": "share of its variance the model cannot reconstruct",
    "code": "distance of its code from the test codes",
    "brightness": "brightness",
    "contrast": "contrast",
    "roughness": "roughness (pixel-to-pixel change)",
    "edge direction": "edges running one way (a moon's run every way)",
    "edge alignment": "edges running along the frame's sides",
}
QUANTILE = 0.99        # of the references' distances to their nearest other reference...
THRESHOLD_FACTOR = 1.3  # ...times this is the threshold (benchmarks/familiarity.py chose it)
MIN_REFERENCES = 5000  # smaller test sets are topped up with training images (unconditional models)...
MAX_REFERENCES = 5000  # ...and larger ones subsampled, seeded
FLOOR = 1e-3        # added before taking logs: a flat picture has no contrast and no roughness
LEGACY_FACTOR = 3.0  # checkpoints from before profiles: unfamiliar above 3x the test set's 99% error
SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)


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
                        flat.mean(1), (contrast + FLOOR).log(), (roughness + FLOOR).log(),
                        *_edge_directions(pixels)], dim=1)


def _edge_directions(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per picture, from its brightness gradients g (Sobel) at angle t, weighted by |g|^2: how
    much they share one direction (|mean of e^2it|: 0 for a disk, 1 for parallel stripes), and
    how much they run along the frame's axes rather than diagonally (mean of cos 4t: 1 for a
    rectangle, 0 for a disk, -1 for a diamond)."""
    grey = torch.nn.functional.pad(pixels.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    gx = torch.nn.functional.conv2d(grey, SOBEL.view(1, 1, 3, 3)).flatten(1)
    gy = torch.nn.functional.conv2d(grey, SOBEL.t().reshape(1, 1, 3, 3)).flatten(1)
    strength = gx.square() + gy.square()
    cos2, sin2 = gx.square() - gy.square(), 2 * gx * gy  # |g|^2 (cos 2t, sin 2t)
    total = strength.sum(1) + FLOOR
    one_way = torch.hypot(cos2.sum(1), sin2.sum(1)) / total
    along_axes = ((cos2.square() - sin2.square()) / strength.clamp(min=1e-12)).sum(1) / total
    return one_way, along_axes


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
    (above 1: unfamiliar), its standardised measures, and those of that nearest test image.
    A profile stored before the edge measures existed holds the first six, and is judged by them."""
    count = profile["references"].shape[1]
    points = (measures(model, images, labels, (profile["code_mean"], profile["code_std"]))[:, :count]
              - profile["centre"]) / profile["scale"]
    references = profile["references"].double()
    distances = torch.cdist(points, references)
    return distances.min(1).values / profile["threshold"], points, references[distances.argmin(1)]


def relative_distances(model, images: torch.Tensor, profile: dict | None, labels: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """How far each image lies from the model's test images in units of the profile's threshold
    (above 1: unfamiliar): (N,) float64. A checkpoint from before profiles is judged by its
    reconstruction error alone, as it was then; one without a profile finds everything familiar."""
    if not profile:
        return torch.zeros(len(images), dtype=torch.float64)
    if profile.get("format") not in PROFILE_FORMATS:
        errors = evaluation.squared_errors(model, images, labels=labels).double().cpu()
        return errors / (LEGACY_FACTOR * profile["p99"])
    return remoteness(model, images, profile, labels)[0]


def unfamiliar(model, images: torch.Tensor, profile: dict | None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each image is unfamiliar to the model: (N,) bool."""
    return relative_distances(model, images, profile, labels) > 1


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
    if profile.get("format") not in PROFILE_FORMATS:
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


@dataclass
class Reading:
    """The inputs as one model reads them, with what it found on the way."""
    images: list[torch.Tensor]
    label: torch.Tensor | None
    notes: list[str]        # on reading the files
    reasons: list[str]      # "input: why", for each input unfamiliar to the model
    distances: torch.Tensor  # of each input, in units of the model's threshold (`relative_distances`)


def _read(loaded: runs.LoadedRun, references: list[str], label_for) -> Reading:
    notes = []
    images = data_module.load_references(references, loaded.config.data, on_note=notes.append)
    label = label_for(loaded)
    device = loaded.model.device
    profile = profile_of(loaded.checkpoint)
    batch = torch.stack(images).to(device)
    far = relative_distances(loaded.model, batch, profile, None if label is None else label.expand(len(batch)))
    reasons = [f"{reference}: {reason}" for reference, image, distance in zip(references, images, far)
               if distance > 1 and (reason := judge(loaded.model, image.to(device), profile, label)) is not None]
    return Reading(images, label, notes, reasons, far)


def choose_model(run: Path | None, references: list[str], which: str, device, label_for) -> Choice:
    """The model to blend `references` through. A run named with --run is used whatever the
    inputs are, with a warning for each input unfamiliar to it or taken as the built-in moons
    model's (`belongs_to_builtin`). Without --run: the latest run, unless every input is familiar
    to the built-in moons model and one is taken as its; the built-in moons model when there is
    no run yet (if the inputs are like its pictures). `label_for(run)` gives the label a run
    encodes with (None for unconditional runs), or refuses; a blend with a label is never moved
    to another model, nor one of the run's own dataset images (test:7 names another picture in
    another model's data)."""
    moons_model = Path(builtin.names()[0])
    if run is None and runs.latest_run() is None:
        loaded = runs.load_run(moons_model, "best", device)
        reading = _read(loaded, references, label_for)
        if reading.reasons:
            raise VaeError(f"{runs.no_runs_error()}; and the built-in moons model does not know these inputs "
                           f"({reading.reasons[0]})".replace(": expect a poor blend", ""))
        return Choice(loaded, reading.images, reading.label, f"no runs yet in {runs.runs_root()}: blending with the "
                      f"built-in moons model (--run {moons_model}); `vae train` makes your own", reading.notes)
    loaded = runs.load_run(run, which, device)
    reading = _read(loaded, references, label_for)
    unchanged = Choice(loaded, reading.images, reading.label, None, reading.notes + reading.reasons)
    names_its_own_images = any(references_module.dataset_image(reference) for reference in references)
    if reading.label is not None or builtin.is_builtin(loaded.name) or names_its_own_images:
        return unchanged
    alternative = runs.load_run(moons_model, "best", device)
    other = _read(alternative, references, lambda _: None)
    its = belongs_to_builtin(reading.distances, other.distances, comparable_with_builtin(loaded, alternative))
    if run is not None:  # never switch: warn of those not already warned of as unfamiliar
        taken = [f"{reference}: nearer the built-in moons model's training images than this run's (--run "
                 f"{moons_model} blends it there)" for reference, belongs, distance in zip(references, its, reading.distances)
                 if belongs and distance <= 1]
        return dataclasses.replace(unchanged, warnings=unchanged.warnings + taken)
    if other.reasons or not its.any():
        return unchanged
    moved = [reference for reference, belongs in zip(references, its) if belongs]
    switched = (f"{', '.join(moved)} look{'s' if len(moved) == 1 else ''} more like the training images of the "
                f"built-in moons model than like those of {loaded.name}: blended through {moons_model} instead "
                f"(to use {loaded.name} anyway: --run {loaded.name})")
    return Choice(alternative, other.images, None, None, other.notes + [switched])


def comparable_with_builtin(run: runs.LoadedRun, builtin_run: runs.LoadedRun) -> bool:
    """Whether the run's distances and the built-in model's say which of the two an input
    belongs to: when the run was trained on a known dataset of other pictures (a moons run of
    one's own knows moons as well, a folder of one's own pictures may hold moons) and both hold a
    profile (an older checkpoint's reconstruction-error rule counts in other units)."""
    data = run.config.data.name
    return (data != builtin_run.config.data.name and datasets.DATASETS[data].known_subject
            and all((profile_of(model.checkpoint) or {}).get("format") in PROFILE_FORMATS for model in (run, builtin_run)))


def belongs_to_builtin(run_distances: torch.Tensor, builtin_distances: torch.Tensor, comparable: bool) -> torch.Tensor:
    """Per input, whether it is the built-in model's rather than the run's: familiar to the
    built-in model, and farther from the run's pictures than from its (each distance in units of
    its model's threshold) where the two are `comparable`, else unfamiliar to the run."""
    bar = builtin_distances if comparable else torch.ones_like(builtin_distances)
    return (builtin_distances <= 1) & (run_distances > bar)
