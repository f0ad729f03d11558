"""train.cuda_graph is refused in one line wherever it cannot work. (What it does on a GPU is
tested in test_cuda.py.)"""

import pytest
import torch

from vae_cli import config


@pytest.mark.parametrize("settings, message", [
    (["train.device=cpu"], "train.cuda_graph needs a CUDA GPU, not train.device=cpu"),
    (["train.device=mps"], "train.cuda_graph needs a CUDA GPU, not train.device=mps"),
    (["train.precision=fp16"], "use train.precision=bf16 or fp32"),
    (["train.compile=true"], "train.cuda_graph and train.compile both rebuild the training step"),
])
def test_cuda_graph_is_refused_in_one_line_where_it_cannot_work(settings, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load(None, ["train.cuda_graph=true", *settings])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_graph_with_device_auto_on_a_machine_without_gpu_is_one_line(vae, runs_dir):
    result = vae("train", "--set", "train.cuda_graph=true", "--set", "train.epochs=1")
    assert result.exit_code == 2, result.output
    assert "train.cuda_graph needs a CUDA GPU" in result.output and "Traceback" not in result.output
    assert not runs_dir.exists()
