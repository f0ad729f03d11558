"""Training speed on a CPU shared with other work, measured in one run. Run by hand (not a test):

    VAE_DATA=/path/to/data .venv/bin/python benchmarks/shared_cpu.py [--epochs 3] [--only vae-cli]

12 minutes on a quiet 2-core machine with pythae installed and the default 3 epochs per
measurement (2026-12-03, docs/speed.md); much longer on a busy one. Three conditions, each measured in turn for every trainer:
- alone;
- beside one busy process (a one-core Python loop, started before and stopped after);
- two trainings at once (two processes of the same trainer, started together).
Trainers, each on configs/mnist.yaml's model (MLP 784-400-20, batch 128), in its own process:
vae-cli's Trainer (what `vae train` drives) at 1 thread, 2 threads and train.threads=auto; the
pytorch/examples loop (benchmarks/baseline_examples_vae.py) at 1 thread and PyTorch's default;
pythae's VAE with the same layers and its own trainer, likewise, where pythae is installed
(`pip install pythae`; not a dependency of vae-cli). A row is the mean seconds per epoch of the
training loop alone (no test pass, no checkpoints, no start-up); under "two at once" the slower
of the two; a measurement that takes longer than --timeout is stopped and says so. The
machine's load average (before -> after) is printed beside every row, and the ratios the
issue asks for at the end:
- alone: auto within 5% of the best fixed count (auto / best fixed <= 1.05);
- beside one busy process: auto at most 1.15x the 1-thread time in the same condition;
- two at once: each auto training at most 1.2x a 1-thread training in the same condition.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

BUSY_LOOP = "while True: pass"
CONDITIONS = ("alone", "beside one busy process", "two at once")


def trainers(only: str | None) -> dict[str, list[str]]:
    """Row name -> arguments of its --phase process."""
    rows = {"vae-cli, 1 thread": ["vae-cli", "--threads", "1"],
            "vae-cli, 2 threads": ["vae-cli", "--threads", "2"],
            "vae-cli, auto": ["vae-cli", "--threads", "auto"],
            "pytorch/examples, 1 thread": ["examples", "--threads", "1"],
            "pytorch/examples, default": ["examples", "--threads", "default"],
            "pythae, 1 thread": ["pythae", "--threads", "1"],
            "pythae, default": ["pythae", "--threads", "default"]}
    return {name: phase for name, phase in rows.items() if only is None or phase[0] == only}


def set_threads(threads: str) -> None:
    if threads.isdigit():
        torch.set_num_threads(int(threads))


def run_vae_cli(epochs: int, threads: str) -> dict:
    from rich.progress import Progress

    from train_speed import trainer_on
    from vae_cli import training
    with tempfile.TemporaryDirectory() as run_dir:
        (Path(run_dir) / "checkpoints").mkdir()
        trainer = trainer_on("cpu", Path(run_dir), [f"train.epochs={epochs}", f"train.threads={threads}"])
        seconds, counts = [], []
        with training.StopRequests() as stop, Progress(disable=True) as progress:
            for _ in range(epochs):
                start = time.perf_counter()
                trainer.run_epoch(progress, stop)
                seconds.append(time.perf_counter() - start)
                counts.append(trainer.threads.count)
                trainer.end_epoch(0.0, seconds[-1])
    return {"seconds": seconds, "threads": counts}


def run_examples(epochs: int, threads: str) -> dict:
    import contextlib
    import io

    import baseline_examples_vae as reference
    set_threads(threads)
    torch.manual_seed(1)
    train_loader, _ = reference.loaders(os.environ.get("VAE_DATA", "data"))
    model = reference.ExamplesVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its log lines, kept but not shown
            reference.train_epoch(model, optimizer, train_loader, epoch=epoch)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "threads": [torch.get_num_threads()] * epochs}


def run_pythae(epochs: int, threads: str) -> dict:
    """pythae's VAE with pytorch/examples' layers, trained by its own BaseTrainer on MNIST held
    in memory; the epochs' time is the trainer's whole train() less its set-up, per epoch."""
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from torch import nn

    from vae_cli import config, data
    set_threads(threads)
    torch.manual_seed(1)
    mnist = data.load(config.load(HERE.parent / "configs" / "mnist.yaml").data)
    images = BaseDataset(data.as_float(mnist.train), mnist.train_labels)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.hidden, self.mean, self.log_var = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)

        def forward(self, x):
            h = torch.relu(self.hidden(x.flatten(1)))
            return ModelOutput(embedding=self.mean(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784), nn.Sigmoid())

        def forward(self, z):
            return ModelOutput(reconstruction=self.layers(z).view(-1, 1, 28, 28))

    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"), Encoder(), Decoder())
    with tempfile.TemporaryDirectory() as out:
        trainer = BaseTrainer(model, images, training_config=BaseTrainerConfig(
            output_dir=out, num_epochs=epochs, per_device_train_batch_size=128, learning_rate=1e-3,
            steps_saving=None, no_cuda=True, optimizer_cls="Adam"))
        start = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - start
    return {"seconds": [total / epochs] * epochs, "threads": [torch.get_num_threads()] * epochs}


PHASES = {"vae-cli": run_vae_cli, "examples": run_examples, "pythae": run_pythae}


def start_phase(phase: list[str], epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--phase", *phase, "--epochs", str(epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(process: subprocess.Popen, timeout: float) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return {"error": f"stopped after {timeout:.0f} s"}
    if process.returncode != 0:
        return {"error": (stderr.strip().splitlines() or ["exit code %d" % process.returncode])[-1]}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["per_epoch"] = sum(result["seconds"]) / len(result["seconds"])
    return result


def measure(condition: str, phase: list[str], epochs: int, timeout: float) -> dict:
    """Seconds per epoch of `phase` under `condition` (the slower process of two at once)."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if condition == CONDITIONS[1] else None
    try:
        processes = [start_phase(phase, epochs) for _ in range(2 if condition == CONDITIONS[2] else 1)]
        deadline = time.perf_counter() + timeout
        results = [result_of(p, max(1.0, deadline - time.perf_counter())) for p in processes]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    slowest = max(results, key=lambda r: r["per_epoch"])
    return {"per_epoch": slowest["per_epoch"], "threads": sorted({n for r in results for n in r["threads"]})}


def pythae_missing() -> str | None:
    try:
        import pythae  # noqa: F401
    except ImportError as error:
        return f"pythae is not installed here ({error}): `pip install pythae` to add its rows"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # One 3-second epoch would mostly measure the controller's first probe, not how it trains.
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (each ~3-5 s alone)")
    parser.add_argument("--only", choices=sorted(PHASES), help="measure one trainer's rows only")
    parser.add_argument("--timeout", type=float, default=300, help="seconds after which a measurement is stopped")
    parser.add_argument("--phase", nargs="?", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--threads", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.epochs, args.threads)))
        return

    rows = trainers(args.only)
    note = pythae_missing()
    if note:
        print(note)
        rows = {name: phase for name, phase in rows.items() if phase[0] != "pythae"}
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"{args.epochs} epoch(s) of MNIST per measurement; seconds per epoch (threads used)")
    started = time.perf_counter()
    table = {}
    for condition in CONDITIONS:
        print(f"\n{condition}")
        table[condition] = {}
        for name, phase in rows.items():
            load = os.getloadavg()[0]
            result = table[condition][name] = measure(condition, phase, args.epochs, args.timeout)
            shown = (f"failed: {result['error']}" if "error" in result else
                     f"{result['per_epoch']:7.2f} s  (threads {', '.join(map(str, result['threads']))})")
            print(f"  {name:30s} {shown}  load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    print()
    print_ratios(table)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def print_ratios(table: dict) -> None:
    def seconds(condition, name):
        return table[condition].get(name, {}).get("per_epoch")

    goals = [("alone: auto / best fixed", seconds(CONDITIONS[0], "vae-cli, auto"),
              min(filter(None, (seconds(CONDITIONS[0], f"vae-cli, {n}") for n in ("1 thread", "2 threads"))),
                  default=None), 1.05)]
    for condition, goal in ((CONDITIONS[1], 1.15), (CONDITIONS[2], 1.2)):
        goals.append((f"{condition}: auto / 1 thread", seconds(condition, "vae-cli, auto"),
                      seconds(condition, "vae-cli, 1 thread"), goal))
    for condition in CONDITIONS[1:]:
        for name in ("vae-cli, 2 threads", "pytorch/examples, default", "pythae, default"):
            alone = seconds(CONDITIONS[0], name)
            if alone and seconds(condition, name):
                print(f"{condition}: {name} at {seconds(condition, name) / alone:.1f}x its time alone")
    for what, measured, baseline, goal in goals:
        if measured and baseline:
            ratio = measured / baseline
            print(f"{what}: {ratio:.2f} (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})")


if __name__ == "__main__":
    main()
