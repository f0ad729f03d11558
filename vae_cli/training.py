"""The training loop: in-memory batches, Adam, per-epoch test ELBO, pictures and checkpoints,
exact resume, and a clean stop on Ctrl-C or SIGTERM."""

import math
import signal
import threading
import time
from contextlib import closing, nullcontext
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn.parallel import DistributedDataParallel

from . import data as data_module
from . import callbacks as callbacks_module
from . import evaluation, familiarity, models, runs, samplers
from . import threads as threads_module
from .config import Config, ConfigError
from .cuda_graph import GraphedStep
from .console import console
from .data import ImageData
from .distributed import World
from .errors import Stopped, VaeError
from .board import Board
from .kinds.base import TERM_LABELS, Model

PROGRESS_EVERY = 10  # steps between progress-bar refreshes (and host syncs on accelerators)


class TrainingInterrupted(Stopped):
    pass


class NonFiniteLoss(VaeError):
    pass


class StopRequests:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks between steps, so the
    current step finishes and a checkpoint is written; a second one stops at once."""

    def __init__(self):
        self.signal_name = None
        self.previous = {}

    def _handle(self, number, frame):
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def fit_once(model: Model, data: ImageData, config: Config, run_dir: Path) -> list[dict]:
    """A model fitted in one shot (PCA: one SVD of the training set) has no training loop,
    then the same outputs as a run."""
    started = time.perf_counter()
    model.fit(data.split("train")[0])
    profile = familiarity.profile(model, data.test)
    error = float(evaluation.squared_error(model, data.test))
    seconds = time.perf_counter() - started
    record = {"epoch": 1, "test_squared_error": error, "seconds": round(seconds, 3)}
    runs.append_metrics(run_dir, record)
    callbacks_module.save_pictures(callbacks_module.epoch_pictures(model, data.test, data.test_labels, config.train.seed), run_dir, 1)
    payload = {"config": config.to_dict(), "model": model.state_dict(), "epoch": 1, "step": 0,
               "familiarity": profile}
    runs.save_checkpoint(payload, run_dir / "checkpoints" / "last.pt")
    runs.save_checkpoint(payload, run_dir / "checkpoints" / "best.pt")
    console.print(f"{config.model.kind} with a {config.model.latent_dim}-number code fitted in "
                  f"{seconds:.1f}s: test squared error {error:.2f} per image")
    return [record]


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# The learning rate's factor as a function of how far training is (epochs done, fractional), so
# that a resumed run follows the schedule exactly without storing any scheduler state.
LR_SCHEDULES = {
    "constant": lambda epochs_done, train: 1.0,
    "cosine": lambda epochs_done, train: 0.5 * (1 + math.cos(math.pi * epochs_done / train.epochs)),
    "step": lambda epochs_done, train: train.lr_gamma ** math.floor(epochs_done / train.lr_step_epochs),
}


class Trainer:
    """Trains `model` on `data` (both on `device`) and holds everything that a checkpoint must
    restore: model, optimizer, position in the data (epoch and step), the running sums of the
    current epoch, best test loss, RNG state. It knows no model's formula: it minimises the
    loss the model reports and sums the terms it names. What is written on the way (pictures,
    metrics, curves, TensorBoard, checkpoints) is its callbacks' work (callbacks.py), called at
    set points: after a progress report, after an epoch, on a stop.

    In a torchrun world every rank holds the same state; only rank 0 writes files."""

    def __init__(self, model: Model, data: ImageData, config: Config, run_dir: Path,
                 device: torch.device, world: World = World(), threads: threads_module.ThreadController | None = None,
                 callbacks: list[callbacks_module.Callback] | None = None):
        self.config, self.run_dir, self.device, self.world = config, run_dir, device, world
        # Times every step and moves the CPU thread count as the machine's load changes.
        self.threads = threads or threads_module.for_setting(config.train.threads, device)
        check_setup(config, device, world)
        self.model, self.data = model, data
        # What is written at set points (pictures, metrics, curves, checkpoints): callbacks.py.
        self.callbacks = callbacks_module.standard(run_dir) if callbacks is None else callbacks
        network = self.model
        if world.distributed:
            network = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
        self.network = torch.compile(network) if config.train.compile else network
        # The fused kernel does Adam's arithmetic in one pass per tensor (about 1 ms a step
        # less on a 2-core CPU for the MNIST model); it agrees with the default to rounding.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr, eps=config.train.adam_eps,
                                          fused=device.type in ("cpu", "cuda"), capturable=config.train.cuda_graph)
        self.lr_factor = LR_SCHEDULES[config.train.lr_schedule]
        dtype = PRECISIONS[config.train.precision]
        # A captured step must not keep autocast's cache of cast weights across replays.
        self.autocast = (torch.autocast(device.type, dtype=dtype, cache_enabled=not config.train.cuda_graph)
                         if dtype else nullcontext())
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.train.precision == "fp16")
        self.epoch, self.step, self.best_loss = 0, 0, math.inf
        # The test images' profile (familiarity.profile) after the last epoch, what it describes,
        # and what it holds besides: only rank 0 writes checkpoints, so only it measures them.
        self.familiarity = self.test_as_inputs = self.also_familiar = None
        if world.is_main:
            self.test_as_inputs = familiarity.test_images_as_inputs(config, data.test)
            self.also_familiar = familiarity.also_familiar(config, data.test, data.train, model.conditional)
        # This rank's sums of the loss and the model's terms over the images of the current epoch.
        self.totals = torch.zeros(1 + len(model.term_names), dtype=torch.float64, device=device)
        self.steps_per_epoch = math.ceil(len(self.data.train) / config.train.batch_size)
        self.take_step = (GraphedStep(self.train_step, config.train.batch_size, device, self.step_state)
                          if config.train.cuda_graph else self.train_step)

    def step_state(self) -> list[torch.Tensor]:
        """Every tensor a training step changes (a CUDA graph's warm-up puts them back)."""
        adam = [value for state in self.optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
        return [*self.model.parameters(), *self.model.buffers(), self.totals, *adam]

    def state(self) -> dict:
        return {"config": self.config.to_dict(), "model": self.model.state_dict(), "classes": self.model.classes,
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step": self.step, "best_loss": self.best_loss, "familiarity": self.familiarity,
                "totals": self.world.sum(self.totals.clone()).cpu(), "rng": rng_state(self.device)}

    def restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.step, self.best_loss = checkpoint["epoch"], checkpoint["step"], checkpoint["best_loss"]
        self.familiarity = checkpoint.get("familiarity")
        # The saved sums are global: rank 0 carries them on, so that summing over ranks stays right.
        # (Checkpoints of autoencoders written before models named their terms carry a third, zero KL sum.)
        saved = checkpoint["totals"][:len(self.totals)].to(self.device)
        self.totals = saved if self.world.is_main else torch.zeros_like(saved)
        restore_rng(checkpoint["rng"], self.device)

    def save(self, which: str) -> Path:
        path = self.run_dir / "checkpoints" / f"{which}.pt"
        state = self.state()  # a collective: every rank takes part
        if self.world.is_main:
            runs.save_checkpoint(state, path)
        self.world.barrier()  # no rank exits before the checkpoint is on disk
        return path

    def images_done(self, step: int) -> int:
        return min(step * self.config.train.batch_size, len(self.data.train))

    def train_step(self, rows: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the global batch `rows`; this rank trains on its share."""
        # Every rank draws the whole batch's pixels and noise from the same generator state,
        # so the world together sees exactly what a single process would.
        train = self.config.train
        epochs_done = self.epoch + self.step / self.steps_per_epoch
        self.model.at_epoch(epochs_done)
        for group in self.optimizer.param_groups:
            group["lr"] = train.lr * self.lr_factor(epochs_done, train)
        x = self.data.train_batch(rows)
        noise = self.model.training_noise(len(rows), self.device)
        labels = self.data.train_labels[rows] if self.model.conditional else None
        with self.autocast:
            objective = self.network(self.world.share(x), *(None if t is None else self.world.share(t)
                                                             for t in (noise, labels)))
            total = objective.loss.float().sum()
            # DistributedDataParallel averages gradients over ranks: scaling each share's sum by
            # world size / global batch makes that average the gradient of the global batch mean.
            loss = total * (self.world.size / len(rows))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if train.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # Running sums stay on the device: no host sync per step.
        terms = [objective.terms[name].float().sum() for name in self.model.term_names]
        self.totals += torch.stack([total, *terms]).detach().double()
        return loss.detach()

    def stop_requested(self, stop: StopRequests) -> bool:
        """Whether any rank got SIGINT/SIGTERM (one collective per step in a torchrun world)."""
        if not self.world.distributed:
            return stop.signal_name is not None
        flag = torch.tensor([float(stop.signal_name is not None)], device=self.device)
        return bool(self.world.sum(flag) > 0)

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def call(self, hook: str, *args) -> None:
        """Every callback's `hook` that runs on this rank, in order (on_stop: in reverse)."""
        order = reversed(self.callbacks) if hook == "on_stop" else self.callbacks
        for callback in order:
            if callback.every_rank or self.world.is_main:
                getattr(callback, hook)(self, *args)

    def run_epoch(self, progress: Progress, stop: StopRequests) -> float:
        """Train from the current step to the end of the epoch; returns images per second."""
        train = self.config.train
        task = progress.add_task("", total=self.steps_per_epoch, completed=self.step,
                                 epoch=f"{self.epoch + 1}/{train.epochs}", status="")
        self.network.train()
        order = self.data.epoch_order(train.seed, self.epoch)
        step_losses = torch.zeros(self.steps_per_epoch, device=self.device)
        started, first_step = time.perf_counter(), self.step
        checked = first_step  # steps before this one are known to have finite losses
        while self.step < self.steps_per_epoch:
            rows = order[self.step * train.batch_size:(self.step + 1) * train.batch_size]
            with self.threads.timed():
                step_losses[self.step] = self.take_step(rows)
            self.step += 1
            done = self.step == self.steps_per_epoch
            stopping = self.stop_requested(stop)
            if self.step % PROGRESS_EVERY == 0 or done or stopping:
                _check_finite(self.world.sum(step_losses[checked:self.step].clone()), checked, self.epoch)
                checked = self.step
                rate = (self.images_done(self.step) - self.images_done(first_step)) / (time.perf_counter() - started)
                means = self.named(self.world.sum(self.totals.clone()) / self.images_done(self.step))
                status = "  ".join(f"{TERM_LABELS.get(name, name)} {value:.2f}" for name, value in means.items())
                progress.update(task, completed=self.step,
                                status=f"{status}  {rate:,.0f} img/s  {self.threads.count} threads")
                self.call("after_progress", means["loss"])
            if stopping and not done:
                self.call("on_stop")
                raise interrupted(stop, f"at epoch {self.epoch + 1} step {self.step}/{self.steps_per_epoch}",
                                  self.run_dir)
        progress.remove_task(task)
        return (self.images_done(self.step) - self.images_done(first_step)) / (time.perf_counter() - started)

    def named(self, values: torch.Tensor) -> dict[str, float]:
        """{"loss": ..., term: ...} from a tensor laid out like `totals`."""
        return dict(zip(("loss", *self.model.term_names), values.tolist()))

    def end_epoch(self, images_per_s: float, seconds: float) -> dict:
        """Test loss and terms of the epoch just trained, then the callbacks (pictures, metrics
        line, curves, checkpoints).

        Every rank measures the test set (it is cheap) so that all ranks draw the same noise
        and their random generators stay in step."""
        self.model.eval()
        self.model.prepare_sampling(self.data.train_batches())
        test = evaluation.average_objective(self.model, self.data.test, labels=self.data.test_labels)
        if self.world.is_main:  # no random numbers drawn: the ranks' generators stay in step
            self.familiarity = familiarity.profile(self.model, self.test_as_inputs, self.data.test_labels,
                                                   also=self.also_familiar)
        train = self.named(self.world.sum(self.totals.clone()) / len(self.data.train))
        is_best = test["loss"] < self.best_loss
        self.best_loss = min(self.best_loss, test["loss"])
        self.epoch, self.step = self.epoch + 1, 0
        self.totals.zero_()
        record = {"epoch": self.epoch, **{f"train_{name}": value for name, value in train.items()},
                  **{f"test_{name}": value for name, value in test.items()}, "best": is_best,
                  "seconds": round(seconds, 3), "images_per_s": round(images_per_s, 1), "threads": self.threads.count}
        self.call("after_epoch", callbacks_module.EpochEnd(self, record))
        return record


def check_setup(config: Config, device: torch.device, world: World) -> None:
    """Refuse settings this trainer cannot honour on `device` in `world` (vae train asks before
    it makes the run folder; the Trainer asks again, for those who build one directly)."""
    if world.size > config.train.batch_size:
        raise VaeError(f"train.batch_size={config.train.batch_size} is the global batch and "
                       f"must be at least the {world.size} processes: raise it")
    if config.train.cuda_graph and (device.type != "cuda" or world.distributed):
        raise ConfigError(f"train.cuda_graph needs a CUDA GPU and one process, and this run has "
                          f"{'several processes' if world.distributed else device.type}: set train.cuda_graph=false")
    if config.train.cuda_graph and (config.train.lr_schedule != "constant"
                                    or models.options_of(config.model).objective_changes_over_training):
        # A replayed graph keeps the learning rate and KL weight it was captured with.
        raise ConfigError("train.cuda_graph replays one captured step, so the learning rate and the KL weight "
                          "cannot change: use train.lr_schedule=constant and model.kl_warmup_epochs=0 and "
                          "model.kl_warmup_delay=0, or train.cuda_graph=false")


def build(config: Config, device: torch.device) -> tuple[Model, ImageData]:
    """The configured model, initialised from the run's seed, and its data, both on `device`."""
    torch.manual_seed(config.train.seed)
    data = data_module.load(config.data, device)
    return models.build(config, data.classes, len(data.train), data.train).to(device), data


def train(config: Config, run_dir: Path, device: torch.device, resume: dict | None = None,
          world: World = World()) -> list[dict]:
    """Train the configured model on `device` into `run_dir`, continuing from checkpoint
    `resume` if given. Returns the metrics of the epochs trained by this call."""
    threads = threads_module.for_setting(config.train.threads, device)
    model, data = build(config, device)
    if model.fitted_once:
        if world.distributed or resume is not None:
            raise VaeError(f"model.kind={config.model.kind} is fitted in one shot, not a training loop: "
                           f"there is nothing to resume or distribute; train it again in a single process")
        return fit_once(model, data, config, run_dir)
    trainer = Trainer(model, data, config, run_dir, device, world, threads)
    if resume is not None:
        trainer.restore(resume)
        if world.is_main:
            runs.truncate_metrics(run_dir, trainer.epoch)
    epochs, records = config.train.epochs, []
    columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    # The board starts at the step the run resumes from (dropping what was logged after it).
    board = Board(run_dir, config.to_dict(), trainer.global_step, enabled=world.is_main)
    trainer.callbacks = callbacks_module.standard(run_dir, board)
    with StopRequests() as stop, Progress(*columns, console=console, transient=True,
                                          disable=not world.is_main) as progress, closing(board):
        while trainer.epoch < epochs:
            started = time.perf_counter()
            images_per_s = trainer.run_epoch(progress, stop)
            record = trainer.end_epoch(images_per_s, time.perf_counter() - started)
            records.append(record)
            console.print(epoch_line(record, epochs, model), highlight=False, soft_wrap=True)
            if trainer.stop_requested(stop) and trainer.epoch < epochs:
                trainer.call("on_stop")
                raise interrupted(stop, f"after epoch {trainer.epoch}", run_dir)
    if world.is_main:
        samplers.fit_after_training(run_dir, config, data, device)
    return records


def epoch_line(record: dict, epochs: int, model: Model) -> str:
    """One line per epoch: the loss and the model's terms on the training set, the loss on the
    test set, and the real -ELBO beside it where the model reports one apart from its loss."""
    terms = ", ".join(f"{TERM_LABELS.get(name, name)} {record[f'train_{name}']:.2f}" for name in model.term_names)
    elbo = f", -ELBO {record['test_neg_elbo']:.2f}" if "test_neg_elbo" in record else ""
    return (f"epoch {record['epoch']}/{epochs}  train {model.loss_name} {record['train_loss']:.2f} "
            f"({terms})  test {model.loss_name} {record['test_loss']:.2f}{elbo}"
            f"{' (best)' if record['best'] else ''}  {record['seconds']:.1f}s  "
            f"{record['images_per_s']:,.0f} img/s")


SIGNAL_NAMES = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM"}


def interrupted(stop: StopRequests, where: str, run_dir: Path) -> TrainingInterrupted:
    return TrainingInterrupted(
        f"stopped {where} ({SIGNAL_NAMES.get(stop.signal_name, 'a signal on another rank')}) and saved "
        f"{run_dir / 'checkpoints' / 'last.pt'}; resume with: vae train --resume {run_dir}")


def _check_finite(step_losses: torch.Tensor, first_step: int, epoch: int) -> None:
    bad = (~torch.isfinite(step_losses)).nonzero()
    if len(bad):
        index = int(bad[0, 0])
        raise NonFiniteLoss(f"the loss became {float(step_losses[index])} at epoch {epoch + 1} "
                            f"step {first_step + index + 1}; stopped without saving, so the last good "
                            f"checkpoint is kept: try a lower train.lr")
