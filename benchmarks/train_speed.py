"""Training and sampling speed of vae-cli against the pytorch/examples VAE loop, on one machine
in one run. Run by hand (not a test):

    VAE_DATA=/path/to/data .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--rounds 2]

Each measurement runs in its own process so that its peak resident memory is its own, and the
baseline and vae-cli processes take turns for --rounds rounds, so that a slow spell of the
machine hits both. Prints a table with seconds per epoch (median over all epochs of all
rounds), images/s, achieved GFLOP/s of the training step and its share of the measured float32
matmul ceiling, peak memory, and the test -ELBO after the last epoch, then the vae-cli /
baseline speed ratio, the time the step's matrix products alone take (the floor for any fp32
implementation on this BLAS), and where vae-cli's step goes, timed in parts.
"""

import argparse
import functools
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

# Multiply-adds per image of the 784-400-20 VAE: encoder 784x400 and 400x40, decoder 20x400
# and 400x784. Training runs the forward pass, every layer's weight gradient, and the input
# gradient of every layer but the first (the images need no gradient): 3x the forward pass
# less one 784x400 product, 2 FLOPs per multiply-add. (Counting the first layer's input
# gradient too, as a plain "3x forward" does, gives 0.234 TFLOP per epoch instead of 0.197.)
MULTIPLY_ADDS = 784 * 400 + 400 * 40 + 20 * 400 + 400 * 784
TRAIN_FLOPS_PER_IMAGE = 2 * (3 * MULTIPLY_ADDS - 784 * 400)
TRAIN_IMAGES = 60_000
OTHER_CONFIGS = {"moons (default config)": "moons.yaml", "fashion-mnist (conv)": "fashion-mnist.yaml"}


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9


def step_products(batch: int = 128) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The matrix products of one training step, with random operands of the right shapes: per
    layer the forward product and the weight gradient, and the input gradient for all layers
    but the first."""
    products = []
    for index, (n_in, n_out) in enumerate([(784, 400), (400, 40), (20, 400), (400, 784)]):
        inputs, weight, grad = torch.rand(batch, n_in), torch.randn(n_out, n_in), torch.randn(batch, n_out)
        products += [(inputs, weight.T), (grad.T, inputs)] + ([(grad, weight)] if index else [])
    return products


def multiply_all(products: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for a, b in products:
        a @ b


def fastest_ms(functions: dict, calls: int = 60, rounds: int = 7) -> dict:
    """Milliseconds per call of each function, the fastest of `rounds` runs of `calls` calls;
    the functions take turns, so that a slow spell of the machine hits them all."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                function()
            best[name] = min(best[name], (time.perf_counter() - start) / calls * 1000)
    return best


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(epochs: int, seed: int) -> dict:
    import baseline_examples_vae as reference
    torch.manual_seed(seed)
    train_loader, test_loader = reference.loaders(os.environ.get("VAE_DATA", "data"))
    model = reference.ExamplesVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        reference.train_epoch(model, optimizer, train_loader, epoch=len(seconds) + 1)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "test_neg_elbo": reference.test_loss(model, test_loader), "peak_mb": peak_mb()}


def cpu_trainer(run_dir: Path, overrides: list[str], config_name: str = "mnist.yaml"):
    """vae-cli's own Trainer (what `vae train` drives) for a config of configs/, on the CPU."""
    from vae_cli import config, training
    cfg = config.load(ROOT / "configs" / config_name, ["train.device=cpu", *overrides])
    return training.Trainer(cfg, run_dir, torch.device("cpu"))


def run_vae_cli(epochs: int, seed: int, overrides: list[str], config_name: str = "mnist.yaml") -> dict:
    """Train through the same Trainer that `vae train` drives, timing the training part of each
    epoch and the whole epoch (test ELBO, pictures, checkpoints)."""
    from rich.progress import Progress

    from vae_cli import training
    with tempfile.TemporaryDirectory() as run_dir:
        (Path(run_dir) / "checkpoints").mkdir()
        trainer = cpu_trainer(Path(run_dir), [f"train.epochs={epochs}", f"train.seed={seed}", *overrides],
                              config_name)
        seconds, full_epoch = [], []
        with training.StopRequests() as stop, Progress(disable=True) as progress:
            for _ in range(epochs):
                start = time.perf_counter()
                trainer.run_epoch(progress, stop)
                seconds.append(time.perf_counter() - start)
                record = trainer.end_epoch(0.0, seconds[-1])
                full_epoch.append(time.perf_counter() - start)
    return {"seconds": seconds, "full_epoch_seconds": full_epoch, "test_neg_elbo": record["test_loss"],
            "peak_mb": peak_mb(), "images": len(trainer.data.train)}


def step_breakdown() -> dict:
    """Where the time of vae-cli's fp32 training step goes, in milliseconds per step, found by
    timing parts of it. (The PyTorch profiler is no help here: while it records, the first
    layer's weight-gradient product takes 2 ms instead of the 0.4 ms it takes without it.)
    The fixed cost of the operator calls (Python, dispatcher, autograd) is the step time of the
    same model with 4 hidden units, 2 latent dimensions and a batch of 2, where the arithmetic
    is negligible; Adam's own work is its step time on this model less that on the tiny one.
    Also times the step with train.compile=true (the first turn includes the compilation)."""
    def step_and_adam(overrides: list[str]):
        with tempfile.TemporaryDirectory() as run_dir:  # train_step writes nothing
            trainer = cpu_trainer(Path(run_dir), overrides)
        train = trainer.config.train
        batches = itertools.cycle(trainer.data.epoch_order(train.seed, 0).split(train.batch_size)[:-1])
        return (lambda: trainer.train_step(next(batches))), trainer.optimizer.step

    step, adam = step_and_adam([])
    tiny_step, tiny_adam = step_and_adam(["model.hidden=[4]", "model.latent_dim=2", "train.batch_size=2"])
    compiled_step, _ = step_and_adam(["train.compile=true"])
    ms = fastest_ms({"step": step, "adam": adam, "tiny step": tiny_step, "tiny adam": tiny_adam,
                     "matmuls": functools.partial(multiply_all, step_products()), "compiled step": compiled_step})
    parts = {"matrix products (timed alone)": ms["matmuls"],
             "Adam's arithmetic (fused kernel)": ms["adam"] - ms["tiny adam"],
             "fixed cost of the operator calls (Python, dispatch, autograd)": ms["tiny step"]}
    parts["the rest: loss, ReLU, bias sums, batch gather, noise"] = ms["step"] - sum(parts.values())
    return {"step": ms["step"], "parts": parts, "compiled step": ms["compiled step"]}


def time_sampling(run_dir: Path, n: int = 10_000) -> float:
    """Seconds to decode n random codes, without the command's start-up."""
    from vae_cli import latent, runs
    _, model, _ = runs.load_model(run_dir)
    latent.sample_images(model, 100, 0)  # warm-up
    start = time.perf_counter()
    latent.sample_images(model, n, 1)
    return time.perf_counter() - start


def time_command(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vae_cli", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def in_subprocess(phase: str, *args) -> dict:
    output = subprocess.run([sys.executable, __file__, "--phase", phase, *map(str, args)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="times each training measurement is repeated, in turns")
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--phase", choices=["baseline", "vae-cli", "breakdown"], help=argparse.SUPPRESS)
    parser.add_argument("--config", default="mnist.yaml", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "baseline":
        print(json.dumps(run_baseline(args.epochs, args.seed)))
        return
    if args.phase == "vae-cli":
        print(json.dumps(run_vae_cli(args.epochs, args.seed, args.overrides, args.config)))
        return
    if args.phase == "breakdown":
        print(json.dumps(step_breakdown()))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} logical CPUs")
    ceiling = matmul_gflops()
    print(f"float32 2048x2048 matmul: {ceiling:.0f} GFLOP/s (the ceiling); one training epoch is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / 1e12:.3f} TFLOP of matmuls, so the floor is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / ceiling / 1e9:.2f} s per epoch\n")
    phases = {
        "baseline (DataLoader + ToTensor)": ["baseline"],
        "vae-cli": ["vae-cli"],
        "vae-cli, precision bf16": ["vae-cli", "--set", "train.precision=bf16"],
    }
    results = {name: {"seconds": [], "full_epoch_seconds": [], "peak_mb": 0.0} for name in phases}
    for _ in range(args.rounds):
        for name, (phase, *extra) in phases.items():
            result = in_subprocess(phase, "--epochs", args.epochs, "--seed", args.seed, *extra)
            for key in ("seconds", "full_epoch_seconds"):
                results[name][key] += result.get(key, [])
            results[name]["peak_mb"] = max(results[name]["peak_mb"], result["peak_mb"])
            results[name]["test_neg_elbo"] = result["test_neg_elbo"]  # the same in every round: same seed
    header = f"{'':34} {'s/epoch':>8} {'img/s':>8} {'GFLOP/s':>8} {'ceiling':>8} {'peak MB':>8} {'test -ELBO':>11}"
    print(header)
    for name, result in results.items():
        median = statistics.median(result["seconds"])
        gflops = TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / median / 1e9
        print(f"{name:34} {median:8.2f} {TRAIN_IMAGES / median:8.0f} {gflops:8.1f} {gflops / ceiling:8.0%} "
              f"{result['peak_mb']:8.0f} {result['test_neg_elbo']:11.2f}")
    base = statistics.median(results["baseline (DataLoader + ToTensor)"]["seconds"])
    ours = statistics.median(results["vae-cli"]["seconds"])
    print(f"\nspeed ratio vae-cli / baseline: {base / ours:.2f}x (training epochs, median of "
          f"{args.rounds} rounds x {args.epochs} epochs)")
    print(f"vae-cli full epoch incl. test ELBO, pictures and checkpoints: "
          f"{statistics.median(results['vae-cli']['full_epoch_seconds']):.2f} s")
    bf16 = statistics.median(results["vae-cli, precision bf16"]["seconds"])
    print(f"bf16 autocast: {ours / bf16:.2f}x the fp32 speed, test -ELBO "
          f"{results['vae-cli, precision bf16']['test_neg_elbo'] - results['vae-cli']['test_neg_elbo']:+.2f} nats")

    breakdown = in_subprocess("breakdown")
    floor = breakdown["parts"]["matrix products (timed alone)"] * -(-TRAIN_IMAGES // 128) / 1000
    print(f"\nthe matrix products of the epoch's 469 steps alone take {floor:.2f} s: an fp32 implementation "
          f"using PyTorch's matrix multiply cannot exceed {base / floor:.2f}x the baseline")
    print(f"where a vae-cli fp32 step goes ({breakdown['step']:.2f} ms in the fastest of 7 turns, timed in parts):")
    for name, millis in breakdown["parts"].items():
        print(f"  {name:64} {millis:5.2f} ms {millis / breakdown['step']:4.0%}")
    print(f"the same step with train.compile=true: {breakdown['compiled step']:.2f} ms "
          f"({breakdown['step'] / breakdown['compiled step']:.2f}x)")

    print("\nother configs through vae-cli (training part of an epoch, median):")
    for name, config_name in OTHER_CONFIGS.items():
        result = in_subprocess("vae-cli", "--epochs", 2, "--seed", args.seed, "--config", config_name)
        median = statistics.median(result["seconds"])
        print(f"  {name:24} {median:6.2f} s/epoch  {result['images'] / median:8,.0f} img/s")

    with tempfile.TemporaryDirectory() as runs_dir:
        os.environ["VAE_RUNS"] = runs_dir
        time_command(["train", "--config", str(ROOT / "configs" / "mnist.yaml"), "--set", "train.epochs=1",
                      "--name", "bench"])
        sample_command = time_command(["sample", "--n", "10000"])
        sample_seconds = time_sampling(Path(runs_dir) / "bench")
        eval_seconds = time_command(["eval", "--k", str(args.eval_k)])
        report = json.loads((Path(runs_dir) / "bench" / "eval.json").read_text())
    print(f"\nsampling 10000 images: {sample_seconds:.3f} s ({10000 / sample_seconds:,.0f} images/s); "
          f"the whole `vae sample --n 10000` command, start-up included: {sample_command:.2f} s")
    print(f"vae eval --k {args.eval_k} on the 10000 test images: {eval_seconds:.1f} s "
          f"(NLL {report['nll']:.2f} nats after 1 epoch)")


if __name__ == "__main__":
    main()
