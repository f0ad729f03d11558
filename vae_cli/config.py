"""Run configuration: typed dataclasses with defaults, loaded from YAML, overridden by `--set`.

Every check lives in this module. Each field carries its rules (type, allowed choices, lower
bound, and for model and data keys the model kinds or datasets that use it) in its metadata
(vae_cli/fields.py), so the generic checker below validates all of them the same way and the
error names the key, the file and what is allowed. The `model` section is built from the
registry of model kinds (vae_cli/models.py): each kind declares its own options; the dataset
choices and their rules come from the registry of datasets (vae_cli/datasets.py). Other choices
mirror the registries of the modules that build things (networks.NETWORKS,
objectives.LIKELIHOODS); tests/test_config.py ties them together.
This module imports no torch, so the CLI can check a config before loading it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import files, models
from .datasets import DATASETS
from .fields import Section, option, option_like
from .errors import UsageError


class ConfigError(UsageError):
    """A config file or `--set` override that cannot become a valid Config."""


SEED_MAX = 2**32 - 1  # seeds become torch generator seeds, combined with the epoch


@dataclass
class DataConfig(Section):
    selector = "name"
    name: str = option("moons", "dataset: " + " | ".join(f"{name} ({d.summary})" for name, d in DATASETS.items()),
                       choices=tuple(DATASETS))
    root: str | None = option(None, "folder holding MNIST/ and FashionMNIST/ (else $VAE_DATA, else ./data)")
    path: str | None = option(None, "the folder of images", used_by=("folder",))
    image_size: int = option(28, "images are resized to image_size x image_size", minimum=8, maximum=1024)
    channels: int = option(1, "1 = grayscale, 3 = RGB", choices=(1, 3))
    binarize: str = option("none", "none | static (once) | dynamic (every batch)",
                           choices=("none", "static", "dynamic"))
    train_size: int = option(8192, "number of training images", minimum=1, used_by=("moons",))
    test_size: int = option(1024, "number of test images", minimum=1, used_by=("moons",))
    test_fraction: float = option(0.1, "share of images held out for testing", above=0.0, used_by=("folder",))
    moons: str = option("photo", "photo (what a camera sees: texture, sky, stars, waxing and waning) "
                        "| clean (grey disks on black, lit from the right)", choices=("photo", "clean"), used_by=("moons",))
    crop: str = option("auto", "object (crop image files and moons to the square around the bright object) "
                       "| none (centre square) | auto (object for moons, else none)",
                       choices=("auto", "object", "none"))

    @property
    def framing(self) -> str:
        """What is done to image files (training folders and interpolation inputs) and to
        rendered moons before they are resized: object or none."""
        if self.crop == "auto":
            return "object" if self.name == "moons" else "none"
        return self.crop


def _model_config_class() -> type:
    """The `model` section: `kind`, then every key of every kind's options (models.KINDS), each
    read by the kinds that declare it: the keys some kinds read first, then those all read."""
    declared, readers = {}, {}
    for name, kind in models.KINDS.items():
        for f in dataclasses.fields(kind.options):
            declared.setdefault(f.name, f)
            readers.setdefault(f.name, []).append(name)
    kinds = " | ".join(f"{name} ({kind.summary})" for name, kind in models.KINDS.items())
    spec = [("kind", str, option("vae", kinds, choices=tuple(models.KINDS)))]
    for name, f in sorted(declared.items(), key=lambda item: len(readers[item[0]]) == len(models.KINDS)):
        used_by = None if len(readers[name]) == len(models.KINDS) else tuple(readers[name])
        spec.append((name, f.type, option_like(f, used_by=used_by)))
    return dataclasses.make_dataclass("ModelConfig", spec, bases=(Section,),
                                      namespace={"selector": "kind", "__module__": __name__})


ModelConfig = _model_config_class()


@dataclass
class TrainConfig(Section):
    epochs: int = option(10, "passes over the training set", minimum=1)
    batch_size: int = option(128, "images per optimizer step (the global batch under torchrun)", minimum=1,
                             maximum=1_000_000)
    lr: float = option(1e-3, "Adam learning rate (at the start of the schedule)", above=0.0)
    lr_schedule: str = option("constant", "constant | cosine (to 0 at the last step) | step (times lr_gamma "
                                          "every lr_step_epochs)", choices=("constant", "cosine", "step"))
    lr_step_epochs: int = option(10, "step: epochs between decays", minimum=1)
    lr_gamma: float = option(0.1, "step: factor per decay", above=0.0)
    adam_eps: float = option(1e-8, "Adam's eps (added to the root of the second moment)", above=0.0)
    clip_grad_norm: float = option(0.0, "clip the gradient's global L2 norm to this (0 = no clipping)", minimum=0.0)
    seed: int = option(0, "seed for data order, noise, initialisation and pictures", minimum=0, maximum=SEED_MAX)
    device: str = option("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    precision: str = option("fp32", "fp32, or autocast to bf16 (CPU or GPU) or fp16 (GPU, with a gradient scaler)",
                            choices=("fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the model")
    cuda_graph: bool = option(False, "replay each training step as one CUDA graph (CUDA only, fp32 or bf16, "
                                     "one process): several times faster for small models")
    threads: int | typing.Literal["auto"] = option(
        "auto", "CPU threads: auto (chosen from measured step times while the run goes on, see docs/speed.md), "
                "a number (fixed: results the same to the last digit), or 0 (one per physical core, fixed)",
        minimum=0, maximum=1024)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain values, without the keys the model kind or dataset does not read."""
        return {section: {name: value for name, value in dataclasses.asdict(values).items() if values.applies(name)}
                for section, values in vars(self).items()}


SECTION_CLASSES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
SECTION_FIELDS = {section: {f.name for f in dataclasses.fields(cls)} for section, cls in SECTION_CLASSES.items()}


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTION_CLASSES.items() for f in dataclasses.fields(cls)]


def describe_keys(kind: str | None = None) -> list[tuple[str, object, str]]:
    """(key, default, help and allowed values) for every config key, or for those that model
    kind `kind` accepts."""
    defaults = dataclasses.asdict(Config())
    rows = []
    for section, cls in SECTION_CLASSES.items():
        types = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            used_by = f.metadata["used_by"]
            if section == "model" and kind is not None and used_by is not None and kind not in used_by:
                continue
            only = f"; {section}.{cls.selector} {', '.join(used_by)} only" if used_by and not (section == "model" and kind) else ""
            if f.metadata["used_with"]:
                other, values = f.metadata["used_with"]
                only += f"; {section}.{other} {', '.join(values)} only"
            rows.append((f"{section}.{f.name}", defaults[section][f.name],
                         f"{f.metadata['help']} ({_describe(f, types[f.name])}{only})"))
    return rows


def key_reference() -> str:
    """Every config key as a Markdown table: docs/configs.md holds it (`vae keys --markdown`
    writes it; tests/test_docs.py checks that the page is current)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    rows = [f"| `{key}` | `{'null' if default is None else cell(default)}` | {cell(meaning)} |"
            for key, default, meaning in describe_keys()]
    return "\n".join(["| key | default | meaning |", "| --- | --- | --- |", *rows]) + "\n"


def _unknown_key(key: str, source: str) -> ConfigError:
    if key.partition(".")[0] not in SECTION_CLASSES:
        return _unknown_section(key.partition(".")[0], source)
    close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(all_keys())}"
    return ConfigError(f"{source}: unknown key {key!r}{hint}")


def _unknown_section(name: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(SECTION_CLASSES), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{source}: unknown section {name!r}{hint}; the sections are {', '.join(SECTION_CLASSES)}")


def _describe(f: dataclasses.Field, tp) -> str:
    rules = f.metadata
    if rules["choices"]:
        return "one of " + ", ".join(str(c) for c in rules["choices"])
    kind = _type_name(tp)
    if rules["minimum"] is not None and rules["maximum"] is not None:
        return f"{kind} from {rules['minimum']:g} to {rules['maximum']:d}"
    if rules["minimum"] is not None:
        return f"{kind} >= {rules['minimum']:g}"
    if rules["above"] is not None:
        return f"{kind} > {rules['above']:g}"
    return kind


def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list[int]: "a list of positive integers"}
    words, tp = _words(tp)
    if words:
        return " or ".join([*words, _type_name(tp)])
    args = typing.get_args(tp)
    if type(None) in args:
        return names[next(a for a in args if a is not type(None))] + " or null"
    return names[tp]


def _words(tp) -> tuple[tuple[str, ...], object]:
    """The words a type such as `int | Literal["auto"]` accepts besides its other type, and that type."""
    literals = [a for a in typing.get_args(tp) if typing.get_origin(a) is typing.Literal]
    if not literals:
        return (), tp
    return typing.get_args(literals[0]), next(a for a in typing.get_args(tp) if a is not literals[0])


def _coerce(value, tp):
    """The value as type `tp`, or raise ValueError. YAML 1.1 reads `1e-3` as a string, so
    numbers written that way are accepted too."""
    words, tp = _words(tp)
    if isinstance(value, str) and value in words:
        return value
    args = typing.get_args(tp)
    if type(None) in args:
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp == list[int]:
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                           for v in value):
            return list(value)
    raise ValueError(value)


def _checked(f: dataclasses.Field, tp, value, key: str, source: str):
    try:
        value = _coerce(value, tp)
    except (ValueError, OverflowError):
        raise ConfigError(f"{source}: {key} must be {_describe(f, tp)}, got {value!r}") from None
    rules = f.metadata
    if value in _words(tp)[0]:
        return value
    bad = ((rules["choices"] and value not in rules["choices"])
           or (rules["minimum"] is not None and value < rules["minimum"])
           or (rules["above"] is not None and not value > rules["above"])
           or (rules["maximum"] is not None and value > rules["maximum"])
           or (isinstance(value, float) and not math.isfinite(value)))
    if bad:
        raise ConfigError(f"{source}: {key} must be {_describe(f, tp)}, got {value!r}")
    return value


def from_dict(raw, source: str) -> Config:
    """A validated Config from a nested mapping (a parsed YAML file); defaults fill the gaps."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections "
                          f"({', '.join(SECTION_CLASSES)}), got {type(raw).__name__}")
    sections = {}
    for section, cls in SECTION_CLASSES.items():
        values = raw.get(section)
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys, "
                              f"got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        types = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in values.items():
            key = f"{section}.{name}"
            if name not in fields:
                raise _unknown_key(key, source)
            kwargs[name] = _checked(fields[name], types[name], value, key, source)
        sections[section] = cls(**kwargs)
    for section in raw:
        if section not in SECTION_CLASSES:
            raise _unknown_section(str(section), source)
    config = Config(**sections)
    for section, values in vars(config).items():
        _check_unread_keys(section, values, source)
    _check_combination(config, source)
    return config


def from_stored(raw, source: str) -> Config:
    """A Config from one the tool saved itself (a checkpoint's, a run folder's config.yaml).
    Data keys its dataset does not read are dropped first: older versions stored every data
    key and accepted values that did nothing, and such a run must still load."""
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        dataset = DataConfig(name=raw["data"].get("name", DataConfig.name))
        raw = {**raw, "data": {key: value for key, value in raw["data"].items()
                               if key not in SECTION_FIELDS["data"] or dataset.applies(key)}}
    return from_dict(raw, source)


def _check_unread_keys(section: str, values: Section, source: str) -> None:
    """A key that the section's model kind, dataset or other settings do not read must keep its
    default (as old run folders store them): a set value would silently do nothing."""
    default = type(values)()
    names = [f.name for f in dataclasses.fields(values)]
    for name in names:
        if values.applies(name) or getattr(values, name) == getattr(default, name):
            continue
        used_by = values.used_by(name)
        if used_by is not None and getattr(values, values.selector) not in used_by:
            key, readers = values.selector, used_by
        else:
            key, readers = values.rules(name)["used_with"]
        setting = f"{section}.{key}={getattr(values, key)}"
        read = ", ".join(f"{section}.{n}" for n in names if values.applies(n) and n != values.selector)
        raise ConfigError(f"{source}: {section}.{name} does nothing for {setting} (only for {', '.join(readers)}): "
                          f"remove it; {setting} reads {read}")


def unlabelled_data_error(config: Config, source: str) -> ConfigError:
    where = f" at {config.data.path} (no class subfolders)" if config.data.name == "folder" else ""
    labelled = ", ".join(f"{name} ({d.labels})" for name, d in DATASETS.items() if d.labelled)
    return ConfigError(f"{source}: model.conditional=true needs images with labels: {labelled}; "
                       f"data.name={config.data.name}{where} has none: set model.conditional=false")


def _check_combination(config: Config, source: str) -> None:
    """Rules that involve more than one key."""
    data, model = config.data, config.model
    dataset = DATASETS[data.name]
    if model.applies("conditional") and model.conditional and not dataset.labelled:
        raise unlabelled_data_error(config, source)
    if data.channels not in dataset.channels or dataset.image_size not in (None, data.image_size):
        fixes = [f"data.image_size={dataset.image_size}"] if dataset.image_size else []
        fixes += [f"data.channels={dataset.channels[0]}"] if len(dataset.channels) == 1 else []
        raise ConfigError(f"{source}: {data.name} images are {dataset.shape_rule}: set {' and '.join(fixes)}")
    if data.name == "folder" and not data.path:
        raise ConfigError(f"{source}: data.name=folder needs data.path, the folder of images")
    if data.binarize != "none" and model.applies("likelihood") and model.likelihood != "bernoulli":
        raise ConfigError(f"{source}: data.binarize={data.binarize} makes binary pixels: "
                          f"use model.likelihood=bernoulli")
    if model.applies("network") and model.network == "conv":
        if not model.hidden:
            raise ConfigError(f"{source}: model.hidden must list at least one channel count for conv")
        if data.image_size % (2 ** len(model.hidden)) != 0:
            raise ConfigError(f"{source}: a conv network with {len(model.hidden)} stride-2 layers "
                              f"needs data.image_size divisible by {2 ** len(model.hidden)}, "
                              f"got {data.image_size}")
    check_device(config.train.device, f"{source}: train.device")
    _check_cuda_graph(config.train, source)


def check_device(name: str, what: str) -> str:
    """A device name torch understands (`vae train`'s train.device, every other command's --device)."""
    if not (name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ConfigError(f"{what} must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    return name


def check_threads(text: str, command: str):
    """`command --threads TEXT` as train.threads takes it: auto or a number."""
    field_ = next(f for f in dataclasses.fields(TrainConfig) if f.name == "threads")
    value = yaml.safe_load(text) if text.strip() else text
    return _checked(field_, typing.get_type_hints(TrainConfig)["threads"], value, "--threads", command)


def _check_cuda_graph(train: TrainConfig, source: str) -> None:
    if not train.cuda_graph:
        return
    if train.device in ("cpu", "mps"):
        raise ConfigError(f"{source}: train.cuda_graph needs a CUDA GPU, not train.device={train.device}: "
                          f"set train.cuda_graph=false")
    if train.precision == "fp16":
        raise ConfigError(f"{source}: train.cuda_graph cannot replay fp16's gradient scaler, which keeps "
                          f"its bookkeeping on the host between steps: use train.precision=bf16 or fp32")
    if train.compile:
        raise ConfigError(f"{source}: train.cuda_graph and train.compile both rebuild the training step: "
                          f"set one of them to false")


def parse_override(text: str) -> tuple[str, object]:
    """`section.key=value` -> (key, checked value); the value is read as YAML, so 3, 1e-3 and
    [64, 32] work."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
    if key not in all_keys():
        raise _unknown_key(key, "--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML") from None
    section, name = key.split(".")
    cls = SECTION_CLASSES[section]
    field_ = next(f for f in dataclasses.fields(cls) if f.name == name)
    return key, _checked(field_, typing.get_type_hints(cls)[name], parsed, key, "--set")


def read_yaml(path: Path):
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass an existing file to --config "
                          f"(see configs/ for examples)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise ConfigError(f"{path}: not valid YAML{line}: fix the syntax") from None


def with_overrides(raw, overrides: list[str], source: str, allowed: set[str] | None = None) -> Config:
    """A validated Config from a parsed mapping with `--set` overrides applied; `allowed`, if
    given, limits which keys may be overridden (a resumed run may only change a few)."""
    raw = {} if raw is None else copy.deepcopy(raw)  # an empty file is all defaults; the caller's mapping stays as it was
    if isinstance(raw, dict):
        for text in overrides:
            key, value = parse_override(text)
            if allowed is not None and key not in allowed:
                raise ConfigError(f"{source}: --set {key} cannot be changed; only {', '.join(sorted(allowed))} can")
            section, name = key.split(".")
            if raw.get(section) is None:
                raw[section] = {}
            if isinstance(raw[section], dict):
                raw[section][name] = value
        if overrides:
            source += " with --set overrides"
    return from_dict(raw, source)


def load(path: Path | None = None, overrides: list[str] = ()) -> Config:
    """The config from `path` (defaults if None) with `--set` overrides applied, validated."""
    raw = read_yaml(path) if path is not None else {}
    return with_overrides(raw, overrides, str(path) if path is not None else "default config")


def save(config: Config, path: Path, origin: str | None = None) -> None:
    """The resolved config as YAML; `origin`, if given, becomes a leading comment saying where it came from."""
    header = f"# {origin}\n" if origin else ""
    files.write_text(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False))
