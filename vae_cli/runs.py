"""Run directories and checkpoints.

A run directory holds everything needed to reproduce and inspect a run:
  config.yaml            the fully resolved config (`vae train --config` it to re-create the run)
  metrics.jsonl          one JSON line per epoch
  checkpoints/last.pt    where training stopped (model, optimizer, position, RNG states)
  checkpoints/best.pt    the weights with the lowest test loss
  reconstructions_XXX.png, samples_XXX.png   pictures per epoch
  training.json          only while a `vae train` process writes the run: its host and process id

Checkpoints hold only tensors and plain data and are read with weights_only=True, so a
checkpoint handed over by someone else cannot run code.
"""

import io
import json
import os
import pickle
import re
import shutil
import socket
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import config as config_module
from . import builtin, files, models
from . import device as device_module
from .config import Config, ConfigError
from .errors import UsageError, VaeError

LATEST = "latest"
# One rule for run names: safe as a folder on every file system and in a shell, never hidden.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RUN_NAME_RULE = ("a run name is 1 to 64 letters, digits, - and _, starting with a letter or digit "
                 f"(and not '{LATEST}')")
CHECKPOINT_FORMAT = "vae-cli/1"


def runs_root() -> Path:
    return Path(os.environ.get("VAE_RUNS", "runs"))


def new_run_dir(config: Config, name: str | None) -> Path:
    """A fresh run directory; an existing run is never reused or overwritten."""
    root = runs_root()
    if name is not None:
        if not RUN_NAME.fullmatch(name) or name == LATEST:
            raise UsageError(f"--name {name!r}: {RUN_NAME_RULE}")
        run_dir = root / name
        if run_dir.exists():
            raise UsageError(f"run {run_dir} already exists: choose another --name, "
                             f"or continue it with --resume {run_dir}")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{config.data.name}-{config.model.kind}-{stamp}"
        run_dir, n = root / base, 1
        while run_dir.exists():
            n += 1
            run_dir = root / f"{base}-{n}"
    files.make_folder(run_dir / "checkpoints")
    return run_dir


def discard_run(run_dir: Path) -> None:
    """Remove a run that never reached its first checkpoint, and runs/ if that leaves it empty,
    so a failed start leaves nothing behind."""
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()
    except OSError:
        pass  # not empty: other runs live there


TRAINING_MARK = "training.json"


@contextmanager
def training_mark(run_dir: Path):
    """Mark `run_dir` as being trained by this process while the block runs, so that `vae runs`
    tells a live run from an interrupted one and a second `vae train --resume` cannot write
    into it at the same time."""
    mark = run_dir / TRAINING_MARK
    files.write_text(mark, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def trainer_of(run_dir: Path) -> str | None:
    """'process N' (or 'process N on HOST') of the `vae train` writing `run_dir` now, or None.
    A mark left by a killed process on this host is recognised by its dead process id."""
    try:
        mark = json.loads((run_dir / TRAINING_MARK).read_text(encoding="utf-8"))
        host, pid = str(mark["host"]), int(mark["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return f"process {pid} on {host}"  # another machine's processes cannot be looked up: trust the mark
    if os.name == "posix":  # on Windows signal 0 is CTRL_C_EVENT, not a probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
    return f"process {pid}"


def refuse_if_training(run_dir: Path) -> None:
    trainer = trainer_of(run_dir)
    if trainer is not None:
        raise UsageError(f"{run_dir} is being trained right now by {trainer}: wait for it to finish, or stop it "
                         f"(Ctrl-C, which saves) and resume then; if no such process exists, "
                         f"delete {run_dir / TRAINING_MARK}")


def settle_failed_run(run_dir: Path, new: bool) -> None:
    """After training failed: a run with a checkpoint stays and becomes runs/latest (if the
    disk still allows it), a new run without one is removed."""
    if (run_dir / "checkpoints" / "last.pt").exists():
        try:
            mark_latest(run_dir)
        except files.FileFault:
            pass  # the failure that stopped training is the one to report
    elif new:
        discard_run(run_dir)


def mark_latest(run_dir: Path) -> None:
    """runs/latest is a one-line file naming the newest run (a file, not a symlink, so it
    works on every file system)."""
    files.write_text(runs_root() / LATEST, run_dir.name + "\n")


def latest_run() -> Path | None:
    """The newest run as runs/latest names it, or None when there is none yet."""
    pointer = runs_root() / LATEST
    return runs_root() / pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def no_runs_error() -> VaeError:
    return VaeError(f"no runs yet in {runs_root().resolve()} (runs are looked for in --runs-dir, else "
                    f"$VAE_RUNS, else ./runs): train one with `vae train`, use the built-in moons model "
                    f"with --run {builtin.names()[0]}, or point `vae --runs-dir DIR` or --run RUN_DIR at an existing one")


def resolve_run(run: Path | None) -> Path:
    """The run directory the user named, or the latest run."""
    if run is None:
        run = latest_run()
        if run is None:
            raise no_runs_error()
    if run.exists() and not run.is_dir():
        raise VaeError(f"{run} is a file, not a run directory: pass a folder made by `vae train`")
    if not run.is_dir():
        raise VaeError(f"run directory {run} does not exist: pass a folder made by `vae train`")
    return run


def named_run(name: str) -> Path:
    """The run `vae runs NAME` shows: the folder of that name under the runs folder, else the
    folder at that path; one made by `vae train`, with its config.yaml."""
    run_dir = resolve_run(runs_root() / name if not Path(name).is_dir() else Path(name))
    if not (run_dir / "config.yaml").is_file():
        raise VaeError(f"{run_dir} has no config.yaml: it is not a folder made by `vae train`")
    return run_dir


def output_folder(run: Path | None) -> Path:
    """Where a command's pictures and reports for `run` go: the run's folder, or for a built-in
    model (`builtin:moons`) the current folder, since the installed package is not the user's."""
    return Path(".") if builtin.is_builtin(run) else resolve_run(run)


@dataclass
class LoadedRun:
    name: str         # how messages name it: the run folder, or builtin:NAME
    folder: Path      # output_folder
    config: Config
    model: torch.nn.Module
    checkpoint: dict


def load_run(run: Path | None, which: str = "best", device="cpu") -> LoadedRun:
    """The run (or built-in model) `--run` names, else the latest run, loaded onto `device`."""
    if builtin.is_builtin(run):
        name = builtin.name_of(run)
        if which != "best":
            raise UsageError(f"--checkpoint {which}: {run} has one set of weights, its best: drop --checkpoint")
        return LoadedRun(builtin.PREFIX + name, Path("."), *builtin.load(name, device))
    run_dir = resolve_run(run)
    return LoadedRun(str(run_dir), run_dir, *load_model(run_dir, which, device))


def load_for_output(run: Path | None, which: str, device: str, writes: str | None = None
                    ) -> tuple[LoadedRun, torch.device]:
    """load_run for a command that writes beside the run: the run loaded onto the device that
    `device` (a value config.check_device accepts) asks for, whatever device it was trained on,
    and that device. `writes` (a file in the output folder, or "." for the folder) is checked
    writable first, so that a read-only run folder fails before any model loads."""
    folder = output_folder(run)
    if writes is not None:
        files.check_can_write(folder / writes) if writes != "." else files.check_writable(folder)
    target = device_module.choose(device)
    return load_run(run, which, target), target


def unused_path(path: Path) -> Path:
    """`path`, or the first of path_2, path_3, ... (same suffix) that does not exist yet, so a
    new result never silently replaces an earlier one."""
    candidate, number = Path(path), 1
    while candidate.exists() or candidate.with_suffix("").exists() or candidate.with_suffix(".gif").exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a crash or kill -9
    at any moment leaves either the old checkpoint or the new one, never half of one."""
    # Serialized in memory first: torch.save writing to a full disk itself reports an
    # unrelated RuntimeError, while files.write_bytes names the path and the fix.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **payload}, buffer)
    files.write_bytes(path, buffer.getbuffer(), durable=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    if not path.is_file():
        raise VaeError(f"no checkpoint at {path}: train the run first, or pass another --run")
    if not zipfile.is_zipfile(path):
        raise VaeError(f"{path} is not a checkpoint (not a torch.save archive): it is truncated or "
                       f"another file; use the run's other checkpoint (--checkpoint best or last)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise VaeError(f"{path} holds objects other than tensors and plain data; it was refused "
                       f"unread (it could run code). Only use checkpoints written by vae-cli") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise VaeError(f"{path} is not a readable checkpoint ({type(error).__name__}): "
                       f"it may be truncated; use the run's other checkpoint (--checkpoint best or last)") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise VaeError(f"{path} is not a vae-cli checkpoint: pass one from a run directory")
    return checkpoint


def config_of(checkpoint: dict, path: Path) -> Config:
    try:
        return config_module.from_stored(checkpoint["config"], f"config stored in {path}")
    except (KeyError, ConfigError) as error:
        raise VaeError(f"{path}: its stored config is unusable ({error})") from None


def load_model(run_dir: Path, which: str = "best", device="cpu"):
    """(config, model in eval mode, checkpoint) from a run directory's best or last checkpoint."""
    return load_model_file(run_dir / "checkpoints" / f"{which}.pt", device)


def load_model_file(path: Path, device="cpu"):
    """(config, model in eval mode, checkpoint) from one checkpoint file, mapped onto `device`."""
    checkpoint = load_checkpoint(path, map_location=device)
    config = config_of(checkpoint, path)
    model = models.build(config, checkpoint.get("classes"))
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError) as error:
        first = str(error).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise VaeError(f"{path}: the weights do not fit the model its config describes ({detail}): "
                       f"the checkpoint belongs to another model") from None
    return config, model.to(device).eval(), checkpoint


def refuse_conditional(model, run_dir: Path, command: str) -> None:
    """The commands that encode images without their labels stop at a conditional run."""
    if model.conditional:
        raise UsageError(f"{command} does not take labels yet, and {run_dir} is conditional: "
                         f"use vae sample --label, vae interpolate --label or vae plot")


def label_index(model, name: str, run_name) -> torch.Tensor:
    """The index of class `name` (case-insensitive) among a conditional model's classes, as a
    one-element tensor, for the commands that take --label."""
    if not model.conditional:
        raise UsageError(f"--label: {run_name} is not conditional (model.conditional: true trains one that is)")
    lowered = [c.lower() for c in model.classes]
    if name.lower() not in lowered:
        raise UsageError(f"--label {name!r} is not a class of {run_name}: use one of {', '.join(model.classes)}")
    return torch.tensor([lowered.index(name.lower())])


def append_metrics(run_dir: Path, record: dict) -> None:
    files.append_line(run_dir / "metrics.jsonl", json.dumps(record))


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, epochs: int) -> None:
    """Keep the first `epochs` lines: a run resumed from a checkpoint older than the newest
    metrics line (killed between the two writes) must not log an epoch twice."""
    records = read_metrics(run_dir)[:epochs]
    files.write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))


def summary(run_dir: Path) -> dict:
    """What `vae runs` shows of one run, read from its config.yaml, metrics.jsonl and files."""
    path = run_dir / "config.yaml"
    config = config_module.from_stored(config_module.read_yaml(path), str(path))
    metrics = read_metrics(run_dir)
    losses = [m.get("test_loss", m.get("test_squared_error")) for m in metrics]
    done = len(metrics)
    planned = 1 if models.KINDS[config.model.kind].options.fitted_once else config.train.epochs
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    return {"name": run_dir.name, "dataset": config.data.name, "kind": config.model.kind,
            "epochs": f"{done}/{planned}", "best_test_loss": min(losses) if losses else None,
            "state": "finished" if done >= planned else "training" if trainer_of(run_dir) else "interrupted",
            "when": datetime.fromtimestamp(max(p.stat().st_mtime for p in files)) if files else None,
            "config": config, "last_metrics": metrics[-1] if metrics else {}, "files": files}


def summaries() -> list[dict]:
    """Every run under runs_root() that has a config.yaml, newest first."""
    root = runs_root()
    found = [summary(d) for d in root.iterdir() if (d / "config.yaml").is_file()] if root.is_dir() else []
    return sorted(found, key=lambda s: s["when"] or datetime.min, reverse=True)
