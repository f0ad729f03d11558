"""`torchrun ... -m vae_cli train`: two CPU processes with gloo against one process."""

import os
import signal
import subprocess
import sys
import time

import torch

from conftest import TINY_MOONS
from vae_cli import runs

SETTINGS = [a for o in (*TINY_MOONS, "data.train_size=1024") for a in ("--set", o)]


def vae_cli(runs_dir, *args, processes=1):
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "VAE_RUNS": str(runs_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*launcher, "-m", "vae_cli", *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_two_processes_match_one_and_resume(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    vae_cli(single, "train", *SETTINGS, "--set", "train.epochs=3", "--name", "run")
    output = vae_cli(multi, "train", *SETTINGS, "--set", "train.epochs=2", "--name", "run", processes=2)
    assert output.count("epoch 2/2") == 1  # only rank 0 prints
    vae_cli(multi, "train", "--resume", multi / "run", "--set", "train.epochs=3", processes=2)

    assert sorted(p.name for p in multi.iterdir()) == ["latest", "run"]  # one run directory
    one, two = runs.read_metrics(single / "run"), runs.read_metrics(multi / "run")
    assert [m["epoch"] for m in two] == [1, 2, 3]  # one metrics line per epoch, not one per rank
    assert two[-1]["train_loss"] < two[0]["train_loss"]
    # Same seed, same data order, same noise: the only difference is the order of float32
    # sums (two half-batch gradients all-reduced instead of one full-batch matmul), which
    # changes weights by about 1e-7 per step; after 48 Adam steps we allow 1e-4.
    for a, b in zip(one, two):
        for key in ("train_loss", "test_loss", "test_kl"):
            assert abs(a[key] - b[key]) <= 1e-4 * abs(a[key]), (key, a[key], b[key])
    w1 = torch.load(single / "run/checkpoints/last.pt", weights_only=True)["model"]
    w2 = torch.load(multi / "run/checkpoints/last.pt", weights_only=True)["model"]
    assert w1.keys() == w2.keys()  # the unwrapped model's names: no "module." prefix
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4

    # A checkpoint from the 2-process run samples in a plain single process.
    vae_cli(multi, "sample", "--n", 4, "--run", multi / "run")
    assert (multi / "run" / "sample_n4_seed0_t1.png").is_file()


def test_ctrl_c_under_torchrun_stops_every_rank_with_one_checkpoint(tmp_path):
    longer = [a for o in ("data.train_size=16384", "data.test_size=128", "model.network=mlp", "model.hidden=[64]",
                          "train.batch_size=16", "train.epochs=2") for a in ("--set", o)]
    env = {**os.environ, "VAE_RUNS": str(tmp_path), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "vae_cli", "train", *longer, "--name", "cut"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    # curves.png is the last file of an epoch's end (its first drawing imports matplotlib, which
    # takes seconds): then come the checkpoints and epoch 2.
    while not (tmp_path / "cut" / "curves.png").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # into epoch 2, which takes seconds with a collective every step
    launcher.send_signal(signal.SIGINT)  # torchrun passes it on to both workers
    output = launcher.communicate(timeout=120)[0]
    assert "resume with: vae train --resume" in output, output
    saved = torch.load(tmp_path / "cut/checkpoints/last.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["step"] > 0, (saved["epoch"], saved["step"])  # mid-epoch 2
    assert not list((tmp_path / "cut" / "checkpoints").glob(".*.tmp"))

    vae_cli(tmp_path, "train", "--resume", tmp_path / "cut", processes=2)
    assert [m["epoch"] for m in runs.read_metrics(tmp_path / "cut")] == [1, 2]
