"""What the explore page asks of a trained model, as plain methods the server calls from its
worker threads and the tests call directly.

Codes travel as lists of floats in the model's own code space; images come back as PNG bytes
at the model's resolution (the page scales them up). A run is named, never given as a path:
`names()` lists what `vae runs` lists and the built-in models (builtin:moons), and a name
opens only a folder of that exact name under the runs folder, or a built-in model.
"""

import base64
import io
import math
import tempfile
import threading
from pathlib import Path

import torch

from .. import data as data_module
from .. import builtin, familiarity, runs, samplers
from ..sampling import SAMPLERS
from ..interpolations import INTERPOLATIONS
from ..errors import UsageError, VaeError
from ..images import to_pil

STATS_IMAGES = 1000     # test images whose codes order the sliders, set their ranges and fill the map
SLIDER_SPREAD = 4.0     # a slider spans the test codes' mean ± this many of their standard deviations
PRIOR_SPREAD = 3.0      # ... and at least the prior's ± this many standard deviations
MAX_TEMPERATURE = 100.0  # as `vae sample --temperature`
ACTIVE_VARIANCE = 0.01  # a dimension whose codes vary less says little (Burda et al.'s active units)


def names() -> list[dict]:
    """The runs the page can open, newest first, as `vae runs` lists them, then the built-in models."""
    found = [{"name": run["name"], "dataset": run["dataset"], "kind": run["kind"], "epochs": run["epochs"],
              "state": run["state"]} for run in runs.summaries()]
    for name in builtin.names():
        config = builtin.shipped_config(builtin.name_of(name))
        found.append({"name": name, "dataset": config.data.name, "kind": config.model.kind,
                      "epochs": str(config.train.epochs), "state": "built in"})
    return found


def check_name(name) -> None:
    """A one-line error unless `name` is a run's name in the runs folder or a built-in model's."""
    if isinstance(name, str) and builtin.is_builtin(name):
        builtin.name_of(name)
    else:
        run_folder(name)


def run_folder(name) -> Path:
    """The folder of run `name` under the runs folder: a name by the run-name rule, never a path."""
    if not isinstance(name, str) or not runs.RUN_NAME.fullmatch(name) or name == runs.LATEST:
        raise UsageError(f"run {str(name)[:80]!r}: not a run name ({runs.RUN_NAME_RULE}) "
                         f"nor a built-in model ({', '.join(builtin.names())})")
    folder = runs.runs_root() / name
    if not (folder / "config.yaml").is_file():
        raise UsageError(f"no run named {name!r} in {runs.runs_root()}: `vae runs` lists them")
    return folder


def png(images: torch.Tensor) -> bytes:
    """One image (C, H, W) in [0, 1] as PNG bytes."""
    encoded = io.BytesIO()
    to_pil(images.unsqueeze(0), columns=1, padding=0).save(encoded, format="PNG")
    return encoded.getvalue()


def data_url(image: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(png(image)).decode("ascii")


class Explorer:
    """One loaded run: its model on the CPU and what the page shows of its test codes.

    torch modules are not documented as safe to call from several threads at once, and one
    image per request keeps a single call short, so every use of the model holds `lock`."""

    def __init__(self, name: str):
        self.name = name
        check_name(name)
        if builtin.is_builtin(name):
            self.run_dir = None
            self.config, self.model, checkpoint = builtin.load(builtin.name_of(name))
        else:
            self.run_dir = run_folder(name)
            self.config, self.model, checkpoint = runs.load_model(self.run_dir, "best", "cpu")
        self.checkpoint = checkpoint  # the mixture sampler is fitted to it when first asked for
        self.profile = familiarity.profile_of(checkpoint)
        self._stored_gmm = samplers.stored_gmm(self.run_dir, "best", checkpoint)
        self.lock = threading.Lock()
        self._gmm = None
        self._test_images, self._test_labels = data_module.load(self.config.data).split("test")
        with self.lock, torch.inference_mode():
            shown = self._test_images[:STATS_IMAGES]
            labels = None if self._test_labels is None else self._test_labels[:STATS_IMAGES]
            codes = self.model.encode(shown, labels if self.model.conditional else None)[0]
            prior_low = self.model.codes_from_normal(torch.full((1, self.model.latent_dim), -PRIOR_SPREAD))[0]
            prior_high = self.model.codes_from_normal(torch.full((1, self.model.latent_dim), PRIOR_SPREAD))[0]
            self.model.decode_image(codes[:1], labels[:1] if self.model.conditional else None)  # torch's slow first call, here rather than on the first slider move
        self.centre = codes.mean(0)
        spread = codes.std(0) if len(codes) > 1 else torch.zeros_like(self.centre)
        self.variance = spread ** 2
        self.low = torch.minimum(self.centre - SLIDER_SPREAD * spread, prior_low)
        self.high = torch.maximum(self.centre + SLIDER_SPREAD * spread, prior_high)
        self._codes, self._code_labels = codes, labels

    def info(self) -> dict:
        """What the page needs to draw its controls for this run."""
        config, model = self.config, self.model
        order = sorted(range(model.latent_dim), key=lambda d: -float(self.variance[d]))
        described = {
            "name": self.name, "dataset": config.data.name, "kind": config.model.kind,
            "latent_dim": model.latent_dim, "image_size": config.data.image_size, "channels": config.data.channels,
            "test_images": len(self._test_images), "classes": model.classes, "conditional": model.conditional,
            "samplers": list(SAMPLERS), "methods": list(INTERPOLATIONS),
            "dims": [{"index": d, "variance": float(self.variance[d]), "low": float(self.low[d]),
                      "high": float(self.high[d]), "active": bool(self.variance[d] > ACTIVE_VARIANCE)}
                     for d in order],
            "centre": self.centre.tolist(),
        }
        if model.latent_dim == 2:  # the map: test codes by label (a class index, or a moon's phase)
            described["map"] = {"codes": self._codes.tolist(),
                                "labels": None if self._code_labels is None else self._code_labels.tolist()}
        return described

    # Each method below checks its input, then runs the model under the lock.

    def decode(self, code, label=None) -> torch.Tensor:
        code, label = self._code(code), self._label(label)
        with self.lock, torch.inference_mode():
            return self.model.decode_image(code.unsqueeze(0), label)[0]

    def random_code(self, seed, temperature, sampler, label=None) -> tuple[list[float], torch.Tensor]:
        if sampler not in SAMPLERS:
            raise UsageError(f"sampler {str(sampler)[:40]!r}: use one of {', '.join(SAMPLERS)}")
        temperature = _number(temperature, "temperature", 0.0, MAX_TEMPERATURE)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2 ** 63:
            raise UsageError(f"seed {seed!r}: use a whole number from 0")
        label = self._label(label)
        if sampler == "gmm":
            source = self._mixture()
        elif sampler == "auto" and self._stored_gmm is not None:  # as `vae sample` draws by default
            source = self._stored_gmm
        else:
            source = self.model
        with self.lock, torch.inference_mode():
            code = source.sample_codes(1, generator=torch.Generator().manual_seed(seed), temperature=temperature)
            return code[0].tolist(), self.model.decode_image(code, label)[0]

    def encode_upload(self, content: bytes, shown_name: str, label=None) -> dict:
        """An uploaded image file, read exactly as `vae interpolate` reads its inputs: its code,
        the image as the model sees it, the reconstruction, and notes (conversions made, and
        the warning for an input unlike the training images)."""
        label = self._label(label)
        with tempfile.TemporaryDirectory(prefix="vae-explore-") as folder:
            path = Path(folder) / "upload"  # a fixed name: nothing from the request names a file
            path.write_bytes(content)
            try:
                image, notes = data_module.read_input_image(path, self.config.data)
            except VaeError as error:  # name the user's file, not the temporary one
                raise UsageError(str(error).replace(str(path), shown_name)) from None
        return self._encoded(image, notes, label)

    def encode_test_image(self, index, label=None) -> dict:
        """Test image `index` (as test:N in `vae interpolate`), its code and reconstruction;
        a conditional model reads the image's own label unless `label` is given."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise UsageError(f"test image {index!r}: use a whole number")
        image = data_module.image_at(self._test_images, index, "test", f"test image {index}")
        if label is None and self.model.conditional:
            label = int(self._test_labels[index])  # its own class
        result = self._encoded(image, [], self._label(label))
        # A class index for labelled data; a moon's phase.
        result["label"] = None if self._test_labels is None else self._test_labels[index].item()
        return result

    def blend(self, a, b, t, method, label=None) -> torch.Tensor:
        """The decoded code a fraction t of the way from code a to code b (t=0 is a), by `method`."""
        if method not in INTERPOLATIONS:
            raise UsageError(f"method {str(method)[:40]!r}: use one of {', '.join(INTERPOLATIONS)}")
        a, b, label = self._code(a), self._code(b), self._label(label)
        t = _number(t, "t", 0.0, 1.0)
        with self.lock, torch.inference_mode():
            code = INTERPOLATIONS[method](a, b, torch.tensor([[t]]))
            return self.model.decode_image(code, label)[0]

    def _encoded(self, image: torch.Tensor, notes: list[str], label) -> dict:
        with self.lock, torch.inference_mode():
            code = self.model.encode(image.unsqueeze(0), label)[0]
            reconstruction = self.model.decode_image(code, label)[0]
            unfamiliar = familiarity.judge(self.model, image, self.profile, label)
        if unfamiliar:
            notes = [*notes, unfamiliar]
        return {"code": code[0].tolist(), "input": image, "reconstruction": reconstruction, "notes": notes}

    def _mixture(self):
        """The run's GMM sampler, as `vae sample --sampler gmm` fits and stores it (a built-in
        model carries its own)."""
        with self.lock:
            if self._gmm is None:
                self._gmm = self._stored_gmm or samplers.gmm_for_run(self.run_dir, self.config, self.model, "best",
                                                                     self.checkpoint)
            return self._gmm

    def _code(self, code) -> torch.Tensor:
        dims = self.model.latent_dim
        if (not isinstance(code, list) or len(code) != dims
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in code)):
            raise UsageError(f"code: expected a list of {dims} finite numbers (this run's code size)")
        return torch.tensor(code, dtype=torch.float32)

    def _label(self, label) -> torch.Tensor | None:
        if not self.model.conditional:
            return None
        classes = self.model.classes
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(classes):
            raise UsageError(f"label {label!r}: this run is conditional; give a class index "
                             f"0..{len(classes) - 1} ({', '.join(classes)})")
        return torch.tensor([label])


def _number(value, name: str, low: float, high: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise UsageError(f"{name} {value!r}: use a number from {low:g} to {high:g}")
    return float(value)
