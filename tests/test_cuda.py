"""The GPU check: training, exact resume, mixed precision, torch.compile and CPU use of a
GPU-trained run, on CUDA. Marked `cuda`: skipped without a GPU; benchmarks/gpu_check.sh runs
them (`pytest -m cuda`), and its --dry-run runs them on the CPU with tiny models
(VAE_CHECK_DEVICE=cpu). Measured numbers go to the check's summary through `figure`."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CHECK_DEVICE, TINY_MOONS
from vae_cli import runs, training

pytestmark = pytest.mark.cuda

DEVICE = CHECK_DEVICE or "cuda"
ON_GPU = DEVICE != "cpu"
CONFIG_DIR = Path(__file__).parents[1] / "configs"
# The shipped configs at full size on the GPU; in the CPU dry run tiny networks and large
# batches (MNIST epochs of 30 steps), so that the dry run stays short on a busy laptop.
DRY = ["train.batch_size=2048"]
CONFIGS = {
    "moons": ("moons.yaml", [] if ON_GPU else TINY_MOONS),
    "mnist-mlp": ("mnist.yaml", [] if ON_GPU else ["model.hidden=[32]", *DRY]),
    "conv": ("fashion-mnist.yaml", [] if ON_GPU else ["model.hidden=[4, 8]", *DRY]),
}
INTERRUPT_STEP = 234 if ON_GPU else 10  # mid-epoch: of 469 steps on the GPU, of 30 in the dry run
# Two runs that differ only in float rounding or in their random streams (another device, a
# lower precision, fused kernels) take different paths through training and end about as far
# apart as two noise seeds; lower precision may also cost a little (bf16 landed 0.2-0.4 nats
# above fp32 after 3 epochs in the CPU benchmark, see README). 1 nat is under 1% of the
# -ELBO after 2 epochs (about 117 nats for configs/mnist.yaml), far below what a wrong device
# placement or a broken gradient scaler costs.
SAME_RUN_NATS = 1.0


@pytest.fixture
def train(vae, runs_dir, mnist_root):
    """train(name, config, *overrides, epochs=2, expect=0): `vae train` a shipped config on
    the checked device; returns the run directory."""
    def run(name, config, *overrides, epochs=2, expect=0):
        file, sizes = CONFIGS[config]
        settings = [f"train.device={DEVICE}", f"train.epochs={epochs}", f"data.root={mnist_root}",
                    *sizes, *overrides]
        result = vae("train", "--config", CONFIG_DIR / file, "--name", name,
                     *[arg for setting in settings for arg in ("--set", setting)])
        assert result.exit_code == expect, result.output
        return runs_dir / name
    return run


def final_loss(run_dir: Path) -> float:
    return runs.read_metrics(run_dir)[-1]["test_loss"]


def saved(run_dir: Path, which: str = "last") -> dict:
    """A checkpoint as written: its tensors come back on the device they were saved from."""
    return torch.load(run_dir / "checkpoints" / f"{which}.pt", weights_only=True)


@pytest.mark.parametrize("config", CONFIGS)
def test_a_shipped_config_trains_on_the_device(train, config, figure):
    run_dir = train("run", config)
    metrics = runs.read_metrics(run_dir)
    assert len(metrics) == 2
    assert all(math.isfinite(m[key]) for m in metrics for key in ("train_loss", "test_loss"))
    assert metrics[1]["test_loss"] < metrics[0]["test_loss"]  # it learns
    assert {t.device.type for t in saved(run_dir)["model"].values()} == {DEVICE}
    figure("test_neg_elbo_after_2_epochs", metrics[1]["test_loss"])
    figure("images_per_s_epoch_2", metrics[1]["images_per_s"])


def test_the_device_and_the_cpu_train_to_the_same_loss(train, figure):
    on_device = final_loss(train("device", "mnist-mlp"))
    on_cpu = final_loss(train("cpu", "mnist-mlp", "train.device=cpu"))
    figure("test_neg_elbo_device_minus_cpu", on_device - on_cpu)
    assert abs(on_device - on_cpu) < SAME_RUN_NATS


class CtrlC:
    """Sends this process a real SIGINT once, when training reaches (epoch, step): the same
    path as a user's Ctrl-C (signal handler, step finished, last.pt written, exit code 130)."""

    def __init__(self, monkeypatch, epoch: int, step: int):
        self.at, self.sent = (epoch, step), False
        original = training.Trainer.stop_requested

        def stop_requested(trainer, stop):
            if not self.sent and (trainer.epoch, trainer.step) == self.at:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
            return original(trainer, stop)
        monkeypatch.setattr(training.Trainer, "stop_requested", stop_requested)


@pytest.fixture
def deterministic(request):
    """torch.use_deterministic_algorithms for the test when the parameter says so (cuBLAS's
    workspace setting for it is made in conftest, before any CUDA work)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(request.param)
    yield request.param
    torch.use_deterministic_algorithms(previous)


def comparable(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("seconds", "images_per_s")} for m in runs.read_metrics(run_dir)]


@pytest.mark.parametrize("config, deterministic", [("mnist-mlp", True), ("conv", True), ("mnist-mlp", False)],
                         indirect=["deterministic"], ids=["mlp-deterministic", "conv-deterministic", "mlp-default"])
def test_resume_after_ctrl_c_equals_the_uninterrupted_run(train, vae, runs_dir, monkeypatch, config,
                                                          deterministic, figure):
    """With deterministic algorithms the resumed run is the uninterrupted one bit for bit. With
    PyTorch's defaults, cuDNN and cuBLAS may pick kernels whose sums vary from run to run, so
    there only the same test -ELBO to 0.05 nats is required and the largest weight difference
    is reported."""
    straight = train("straight", config)
    CtrlC(monkeypatch, epoch=1, step=INTERRUPT_STEP)
    train("cut", config, expect=130)
    assert (saved(runs_dir / "cut")["epoch"], saved(runs_dir / "cut")["step"]) == (1, INTERRUPT_STEP)
    result = vae("train", "--resume", runs_dir / "cut")
    assert result.exit_code == 0, result.output
    a, b = saved(straight)["model"], saved(runs_dir / "cut")["model"]
    largest = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    figure("largest_weight_difference", largest)
    figure("bit_for_bit", all(torch.equal(a[k], b[k]) for k in a))
    if deterministic:
        assert largest == 0.0
        assert comparable(straight) == comparable(runs_dir / "cut")
    else:
        assert abs(final_loss(straight) - final_loss(runs_dir / "cut")) < 0.05


def test_bf16_and_fp16_train_finite_and_near_fp32(train, runs_dir, figure):
    """Batches of 128 (mnist.yaml's) also in the dry run: fp16's gradient scaler starts at 2^16,
    too high for losses summed over pixels, and skips its first steps while it halves the scale
    (6 of the 60 steps of 2048 images in a CPU dry run: 13 nats behind fp32 after them)."""
    losses = {precision: final_loss(train(precision, "mnist-mlp", f"train.precision={precision}", "train.batch_size=128"))
              for precision in ("fp32", "bf16", "fp16")}
    for precision in ("bf16", "fp16"):
        figure(f"test_neg_elbo_{precision}_minus_fp32", losses[precision] - losses["fp32"])
        assert math.isfinite(losses[precision])
        assert abs(losses[precision] - losses["fp32"]) < SAME_RUN_NATS, losses
    scale = saved(runs_dir / "fp16")["scaler"]["scale"]  # fp16's gradient scaler is saved and sane
    figure("fp16_loss_scale_at_the_end", scale)
    assert 0 < scale < math.inf


def test_compile_trains_to_the_same_loss(train, figure):
    eager = final_loss(train("eager", "mnist-mlp", epochs=1))
    compiled_dir = train("compiled", "mnist-mlp", "train.compile=true", epochs=1)
    figure("test_neg_elbo_compiled_minus_eager", final_loss(compiled_dir) - eager)
    figure("first_epoch_seconds_with_compiling", runs.read_metrics(compiled_dir)[0]["seconds"])
    assert abs(final_loss(compiled_dir) - eager) < SAME_RUN_NATS


def without_gpu(runs_dir: Path, *args) -> subprocess.CompletedProcess:
    """The CLI in a process that sees no GPU, as on a laptop."""
    env = {**os.environ, "VAE_RUNS": str(runs_dir), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "vae_cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_run_trained_on_the_device_is_evaluated_sampled_and_interpolated_without_a_gpu(
        vae, runs_dir, figure):
    """Trained with train.device=auto (the GPU when there is one), then used where there is none."""
    assert vae("train", *[arg for o in TINY_MOONS for arg in ("--set", o)], "--set", "train.epochs=2",
               "--name", "run").exit_code == 0
    run_dir = runs_dir / "run"
    assert {t.device.type for t in saved(run_dir, "best")["model"].values()} == {DEVICE}
    assert vae("eval", "--run", run_dir, "--k", 10).exit_code == 0
    on_device = json.loads((run_dir / "eval.json").read_text())

    for args in (["eval", "--run", run_dir, "--k", 10], ["sample", "--run", run_dir, "--n", 16],
                 ["interpolate", "test:0", "test:1", "--run", run_dir]):
        result = without_gpu(runs_dir, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    on_cpu = json.loads((run_dir / "eval.json").read_text())
    assert (run_dir / "sample_n16_seed0_t1.png").is_file()
    assert (run_dir / "interpolate_test-0_test-1_slerp_11steps.png").is_file()
    # The reconstruction from the posterior mean involves no noise: the same weights give the
    # same error on both devices up to float rounding.
    figure("squared_error_device_minus_cpu", on_device["squared_error"] - on_cpu["squared_error"])
    assert on_cpu["squared_error"] == pytest.approx(on_device["squared_error"], rel=1e-4)
    assert math.isfinite(on_cpu["nll"])


needs_cuda_graphs = pytest.mark.skipif(not ON_GPU, reason="CUDA graphs need CUDA: nothing to dry-run on the CPU")


@needs_cuda_graphs
def test_cuda_graph_steps_equal_eager_steps_to_rounding(train, figure):
    """Seven full batches (replays) and a last one of 52 images (eager): too few steps for
    rounding differences to grow, so every weight must agree with eager's to float rounding."""
    tiny = ["data.train_size=500", "train.batch_size=64"]
    eager = saved(train("eager", "moons", *tiny, epochs=1))["model"]
    graphed = saved(train("graphed", "moons", *tiny, "train.cuda_graph=true", epochs=1))["model"]
    figure("largest_weight_difference", max(float((eager[k] - graphed[k]).abs().max()) for k in eager))
    for key in eager:
        torch.testing.assert_close(graphed[key], eager[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config_name, precision", [("mnist-mlp", "fp32"), ("mnist-mlp", "bf16"), ("conv", "fp32")])
@needs_cuda_graphs
def test_cuda_graph_trains_like_eager(train, config_name, precision, figure):
    """Same seed, same batches, same noise: the graph replays eager's kernels. Over a whole
    epoch rounding differences, if any, can grow, so the test -ELBO must agree within the
    issue's 0.5 nats; the figures say how close the runs really are."""
    eager = train("eager", config_name, f"train.precision={precision}", epochs=1)
    graphed = train("graphed", config_name, f"train.precision={precision}", "train.cuda_graph=true", epochs=1)
    a, b = saved(eager)["model"], saved(graphed)["model"]
    figure("largest_weight_difference", max(float((a[k].double() - b[k].double()).abs().max()) for k in a))
    figure("bit_for_bit", all(torch.equal(a[k], b[k]) for k in a))
    figure("test_neg_elbo_graph_minus_eager", final_loss(graphed) - final_loss(eager))
    assert abs(final_loss(graphed) - final_loss(eager)) < 0.5


@needs_cuda_graphs
@pytest.mark.parametrize("deterministic", [True], indirect=True)
def test_cuda_graph_resume_after_ctrl_c_is_bit_for_bit(train, vae, runs_dir, monkeypatch, deterministic, figure):
    """Stopped mid-epoch and resumed in a new process-like run, which captures its own graph:
    the same weights and metrics, bit for bit, as the run that never stopped."""
    straight = train("straight", "mnist-mlp", "train.cuda_graph=true")
    CtrlC(monkeypatch, epoch=1, step=INTERRUPT_STEP)
    train("cut", "mnist-mlp", "train.cuda_graph=true", expect=130)
    result = vae("train", "--resume", runs_dir / "cut")
    assert result.exit_code == 0, result.output
    a, b = saved(straight)["model"], saved(runs_dir / "cut")["model"]
    figure("bit_for_bit", all(torch.equal(a[k], b[k]) for k in a))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert comparable(straight) == comparable(runs_dir / "cut")
