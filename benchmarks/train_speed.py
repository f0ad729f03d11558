"""Training and sampling speed of vae-cli against the pytorch/examples VAE loop, on one machine
in one run. Run by hand (not a test):

    VAE_DATA=/path/to/data .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--rounds 2]
        [--device cpu|cuda] [--short] [--json speed.json]

Each measurement runs in its own process so that its peak memory is its own, and the baseline
and vae-cli processes take turns for --rounds rounds, so that a slow spell of the machine hits
both. All of them train on --device; on an accelerator the baseline runs as main.py does with
its accelerator on. Prints a table with seconds per epoch (median over all epochs of all
rounds), images/s, steps/s, achieved GFLOP/s of the MLP's training step and its share of the
measured float32 matmul ceiling, peak memory (resident on the CPU, allocated on the GPU), and
the test -ELBO after the last epoch, then the speed ratios. Unless --short, on the CPU it goes
on with the time the step's matrix products alone take (the floor for any fp32 implementation
on this BLAS), where vae-cli's step goes, timed in parts, the moons config, and sampling and
evaluation times. --json writes every figure to a file.
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
BASELINE = "baseline (DataLoader + ToTensor)"
CONV = "conv (fashion-mnist.yaml)"


def training_phases(device: str) -> dict[str, list[str]]:
    """What the main table measures: name -> arguments of its --phase process. The MNIST MLP
    rows train configs/mnist.yaml; CUDA graphs exist only on CUDA."""
    cuda = torch.device(device).type == "cuda"
    graph = ["--set", "train.cuda_graph=true"]
    phases = {BASELINE: ["baseline"], "vae-cli": ["vae-cli"],
              "vae-cli, precision bf16": ["vae-cli", "--set", "train.precision=bf16"]}
    if cuda:
        phases["vae-cli, cuda_graph"] = ["vae-cli", *graph]
        phases["vae-cli, cuda_graph, bf16"] = ["vae-cli", *graph, "--set", "train.precision=bf16"]
    phases[CONV] = ["vae-cli", "--config", "fashion-mnist.yaml"]
    if cuda:
        phases["conv, cuda_graph"] = ["vae-cli", "--config", "fashion-mnist.yaml", *graph]
    return phases


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: str = "cpu", n: int = 2048, repeats: int = 10) -> float:
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
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


def peak_mb(device: str) -> float:
    """The process's peak: memory allocated on a GPU, else resident memory."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(epochs: int, seed: int, device: str) -> dict:
    import baseline_examples_vae as reference
    torch.manual_seed(seed)
    train_loader, test_loader = reference.loaders(os.environ.get("VAE_DATA", "data"),
                                                  accelerated=device != "cpu")
    model = reference.ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()  # the loop's loss.item() waits for the device every step
        reference.train_epoch(model, optimizer, train_loader, epoch=len(seconds) + 1, device=device)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "test_neg_elbo": reference.test_loss(model, test_loader, device),
            "peak_mb": peak_mb(device), "images": len(train_loader.dataset), "steps": len(train_loader)}


def trainer_on(device: str, run_dir: Path, overrides: list[str], config_name: str = "mnist.yaml"):
    """vae-cli's own Trainer (what `vae train` drives) for a config of configs/."""
    from vae_cli import config, training
    cfg = config.load(ROOT / "configs" / config_name, [f"train.device={device}", *overrides])
    return training.Trainer(*training.build(cfg, torch.device(device)), cfg, run_dir, torch.device(device))


def run_vae_cli(epochs: int, seed: int, device: str, overrides: list[str], config_name: str = "mnist.yaml") -> dict:
    """Train through the same Trainer that `vae train` drives, timing the training part of each
    epoch (which ends by reading the loss sums back, so the device has finished) and the whole
    epoch (test ELBO, pictures, checkpoints)."""
    from rich.progress import Progress

    from vae_cli import training
    with tempfile.TemporaryDirectory() as run_dir:
        (Path(run_dir) / "checkpoints").mkdir()
        trainer = trainer_on(device, Path(run_dir), [f"train.epochs={epochs}", f"train.seed={seed}", *overrides],
                             config_name)
        seconds, full_epoch = [], []
        with training.StopRequests() as stop, Progress(disable=True) as progress:
            for _ in range(epochs):
                start = time.perf_counter()
                trainer.run_epoch(progress, stop)  # timed like `vae train` without tensorboard
                seconds.append(time.perf_counter() - start)
                record = trainer.end_epoch(0.0, seconds[-1])
                full_epoch.append(time.perf_counter() - start)
    return {"seconds": seconds, "full_epoch_seconds": full_epoch, "test_neg_elbo": record["test_loss"],
            "peak_mb": peak_mb(device), "images": len(trainer.data.train), "steps": trainer.steps_per_epoch}


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
            trainer = trainer_on("cpu", Path(run_dir), overrides)
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
    process = subprocess.run([sys.executable, __file__, "--phase", phase, *map(str, args)],
                             capture_output=True, text=True)
    if process.returncode != 0:
        raise PhaseFailed(f"--phase {phase} {' '.join(map(str, args))} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


class PhaseFailed(Exception):
    """A measurement's process failed; the table goes on without its row."""


def measure_training(args, ceiling: float) -> dict:
    """The main table: every phase in turn for --rounds rounds, then per phase its medians."""
    phases = training_phases(args.device)
    results = {name: {"seconds": [], "full_epoch_seconds": [], "peak_mb": 0.0} for name in phases}
    failed = set()
    for _ in range(args.rounds):
        for name, (phase, *extra) in phases.items():
            if name in failed:
                continue
            try:
                result = in_subprocess(phase, "--epochs", args.epochs, "--seed", args.seed, "--device", args.device,
                                       *extra)
            except PhaseFailed as failure:
                print(failure, file=sys.stderr)
                failed.add(name)
                continue
            for key in ("seconds", "full_epoch_seconds"):
                results[name][key] += result.get(key, [])
            results[name]["peak_mb"] = max(results[name]["peak_mb"], result["peak_mb"])
            for key in ("test_neg_elbo", "images", "steps"):  # the same in every round: same seed
                results[name][key] = result[key]
    for name in failed:
        del results[name]
    print(f"{'':34} {'s/epoch':>8} {'img/s':>9} {'steps/s':>8} {'GFLOP/s':>8} {'ceiling':>8} {'peak MB':>8} "
          f"{'test -ELBO':>11}")
    for name, result in results.items():
        median = result["s_per_epoch"] = statistics.median(result["seconds"])
        result["images_per_s"] = result["images"] / median
        result["steps_per_s"] = result["steps"] / median
        flops = "" if name.startswith("conv") else f"{TRAIN_FLOPS_PER_IMAGE * result['images_per_s'] / 1e9:8.1f}"
        share = "" if name.startswith("conv") else f"{TRAIN_FLOPS_PER_IMAGE * result['images_per_s'] / 1e9 / ceiling:8.1%}"
        print(f"{name:34} {median:8.3f} {result['images_per_s']:9,.0f} {result['steps_per_s']:8,.0f} {flops:>8} "
              f"{share:>8} {result['peak_mb']:8.0f} {result['test_neg_elbo']:11.2f}")
    return results


def ratios(results: dict) -> dict:
    """Speed ratios of images/s (and test -ELBO differences in nats) between rows of the table."""
    pairs = {"vae-cli / baseline": ("vae-cli", BASELINE),
             "cuda_graph / baseline": ("vae-cli, cuda_graph", BASELINE),
             "cuda_graph / eager": ("vae-cli, cuda_graph", "vae-cli"),
             "bf16 / fp32": ("vae-cli, precision bf16", "vae-cli"),
             "cuda_graph bf16 / cuda_graph fp32": ("vae-cli, cuda_graph, bf16", "vae-cli, cuda_graph"),
             "conv cuda_graph / conv eager": ("conv, cuda_graph", CONV)}
    found = {}
    for label, (ours, theirs) in pairs.items():
        if ours in results and theirs in results:
            found[label] = {"speed": results[ours]["images_per_s"] / results[theirs]["images_per_s"],
                            "test_neg_elbo_difference": results[ours]["test_neg_elbo"] - results[theirs]["test_neg_elbo"]}
            print(f"{label:30} {found[label]['speed']:6.2f}x the images/s, test -ELBO "
                  f"{found[label]['test_neg_elbo_difference']:+.2f} nats")
    return found


def cpu_details(args, results: dict) -> dict:
    """The CPU-only part of the report: the step's floor and its parts, moons, sampling, eval."""
    base, ours = results[BASELINE]["s_per_epoch"], results["vae-cli"]["s_per_epoch"]
    print(f"vae-cli full epoch incl. test ELBO, pictures and checkpoints: "
          f"{statistics.median(results['vae-cli']['full_epoch_seconds']):.2f} s")
    breakdown = in_subprocess("breakdown")
    floor = breakdown["parts"]["matrix products (timed alone)"] * -(-TRAIN_IMAGES // 128) / 1000
    print(f"\nthe matrix products of the epoch's 469 steps alone take {floor:.2f} s: an fp32 implementation "
          f"using PyTorch's matrix multiply cannot exceed {base / floor:.2f}x the baseline")
    print(f"where a vae-cli fp32 step goes ({breakdown['step']:.2f} ms in the fastest of 7 turns, timed in parts):")
    for name, millis in breakdown["parts"].items():
        print(f"  {name:64} {millis:5.2f} ms {millis / breakdown['step']:4.0%}")
    print(f"the same step with train.compile=true: {breakdown['compiled step']:.2f} ms "
          f"({breakdown['step'] / breakdown['compiled step']:.2f}x)")

    moons = in_subprocess("vae-cli", "--epochs", 2, "--seed", args.seed, "--device", "cpu", "--config", "moons.yaml")
    moons_seconds = statistics.median(moons["seconds"])
    print(f"\nmoons (default config) through vae-cli: {moons_seconds:.2f} s/epoch, "
          f"{moons['images'] / moons_seconds:,.0f} img/s")

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
    return {"breakdown_ms": breakdown, "matmul_floor_s_per_epoch": floor, "vae_cli_over_baseline": base / ours,
            "moons_s_per_epoch": moons_seconds, "sample_10000_s": sample_seconds,
            "sample_command_s": sample_command, f"eval_k{args.eval_k}_s": eval_seconds}


def describe_device(device: str) -> str:
    if torch.device(device).type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{properties.name}, {properties.total_memory / 2 ** 30:.0f} GiB, CUDA {torch.version.cuda}"
    return f"{torch.get_num_threads()} threads, {os.cpu_count()} logical CPUs"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="times each training measurement is repeated, in turns")
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="where everything trains: cpu, cuda, cuda:N")
    parser.add_argument("--short", action="store_true", help="only the training table (what gpu_check.sh runs)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--phase", choices=["baseline", "vae-cli", "breakdown"], help=argparse.SUPPRESS)
    parser.add_argument("--config", default="mnist.yaml", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "baseline":
        print(json.dumps(run_baseline(args.epochs, args.seed, args.device)))
        return
    if args.phase == "vae-cli":
        print(json.dumps(run_vae_cli(args.epochs, args.seed, args.device, args.overrides, args.config)))
        return
    if args.phase == "breakdown":
        print(json.dumps(step_breakdown()))
        return

    report = {"torch": torch.__version__, "device": args.device, "machine": describe_device(args.device),
              "epochs": args.epochs, "rounds": args.rounds}
    print(f"torch {torch.__version__} on {args.device}: {report['machine']}")
    ceiling = report["matmul_gflops"] = matmul_gflops(args.device)
    print(f"float32 2048x2048 matmul: {ceiling:.0f} GFLOP/s (the ceiling); one MNIST MLP training epoch is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / 1e12:.3f} TFLOP of matmuls, so the floor is "
          f"{TRAIN_FLOPS_PER_IMAGE * TRAIN_IMAGES / ceiling / 1e9:.3f} s per epoch\n")
    results = measure_training(args, ceiling)
    report["training"] = results
    print(f"\nmedian of {args.rounds} rounds x {args.epochs} epochs, training part of the epoch; peak MB is "
          f"{'GPU memory allocated' if torch.device(args.device).type == 'cuda' else 'resident memory'}")
    report["ratios"] = ratios(results)
    if torch.device(args.device).type == "cpu" and not args.short:
        report["cpu"] = cpu_details(args, results)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
