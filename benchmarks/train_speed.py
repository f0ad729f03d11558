"""Training and sampling speed of vae-cli against the pytorch/examples VAE loop, on one machine
in one run. Run by hand (not a test):

    VAE_DATA=/path/to/data .venv/bin/python benchmarks/train_speed.py [--epochs 3]

Each measurement runs in its own process so that its peak resident memory is its own. Prints
a table with seconds per epoch (median), images/s, achieved GFLOP/s of the training step and
its share of the measured float32 matmul ceiling, peak memory, and the test -ELBO after the
last epoch, then the vae-cli / baseline speed ratio.
"""

import argparse
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
        reference.train_epoch(model, optimizer, train_loader)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "test_neg_elbo": reference.test_loss(model, test_loader), "peak_mb": peak_mb()}


def run_vae_cli(epochs: int, seed: int, overrides: list[str], config_name: str = "mnist.yaml") -> dict:
    """Train through the same Trainer that `vae train` drives, timing the training part of each
    epoch and the whole epoch (test ELBO, pictures, checkpoints)."""
    from rich.progress import Progress
    from vae_cli import config, training
    cfg = config.load(ROOT / "configs" / config_name,
                      [f"train.epochs={epochs}", f"train.seed={seed}", "train.device=cpu", *overrides])
    with tempfile.TemporaryDirectory() as run_dir:
        (Path(run_dir) / "checkpoints").mkdir()
        trainer = training.Trainer(cfg, Path(run_dir), torch.device("cpu"))
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
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--phase", choices=["baseline", "vae-cli"], help=argparse.SUPPRESS)
    parser.add_argument("--config", default="mnist.yaml", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "baseline":
        print(json.dumps(run_baseline(args.epochs, args.seed)))
        return
    if args.phase == "vae-cli":
        print(json.dumps(run_vae_cli(args.epochs, args.seed, args.overrides, args.config)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} logical CPUs")
    ceiling = matmul_gflops()
    print(f"float32 2048x2048 matmul: {ceiling:.0f} GFLOP/s (the ceiling); one training epoch is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / 1e12:.3f} TFLOP of matmuls, so the floor is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / ceiling / 1e9:.2f} s per epoch\n")
    results = {
        "baseline (DataLoader + ToTensor)": in_subprocess("baseline", "--epochs", args.epochs, "--seed", args.seed),
        "vae-cli": in_subprocess("vae-cli", "--epochs", args.epochs, "--seed", args.seed),
        "vae-cli, precision bf16": in_subprocess("vae-cli", "--epochs", args.epochs, "--seed", args.seed,
                                                 "--set", "train.precision=bf16"),
    }
    header = f"{'':34} {'s/epoch':>8} {'img/s':>8} {'GFLOP/s':>8} {'ceiling':>8} {'peak MB':>8} {'test -ELBO':>11}"
    print(header)
    for name, result in results.items():
        median = statistics.median(result["seconds"])
        gflops = TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / median / 1e9
        print(f"{name:34} {median:8.2f} {TRAIN_IMAGES / median:8.0f} {gflops:8.1f} {gflops / ceiling:8.0%} "
              f"{result['peak_mb']:8.0f} {result['test_neg_elbo']:11.2f}")
    base = statistics.median(results["baseline (DataLoader + ToTensor)"]["seconds"])
    ours = statistics.median(results["vae-cli"]["seconds"])
    print(f"\nspeed ratio vae-cli / baseline: {base / ours:.2f}x (training epochs, median of {args.epochs})")
    print(f"vae-cli full epoch incl. test ELBO, pictures and checkpoints: "
          f"{statistics.median(results['vae-cli']['full_epoch_seconds']):.2f} s")
    bf16 = statistics.median(results["vae-cli, precision bf16"]["seconds"])
    print(f"bf16 autocast: {ours / bf16:.2f}x the fp32 speed, test -ELBO "
          f"{results['vae-cli, precision bf16']['test_neg_elbo'] - results['vae-cli']['test_neg_elbo']:+.2f} nats")

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
