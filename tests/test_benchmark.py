"""The speed benchmark's premises: its baseline trains the same model on the same objective as
vae-cli (so speed cannot come from doing less), and its matmul floor counts the same products
as its FLOP figure. Timings themselves are not tested: the benchmark is run by hand."""

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import baseline_examples_vae as reference  # noqa: E402
import train_speed  # noqa: E402
from vae_cli import config, models  # noqa: E402

CONFIGS = Path(__file__).parents[1] / "configs"


def test_baseline_and_vae_cli_compute_the_same_loss_from_the_same_weights_and_noise():
    torch.manual_seed(0)
    examples = reference.ExamplesVAE()
    ours = models.build(config.load(CONFIGS / "mnist.yaml"))
    linears = [m for m in ours.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(400, 784), (40, 400), (400, 20), (784, 400)]
    with torch.no_grad():
        # Our encoder's second layer gives mean and log-scale side by side; pytorch/examples has
        # one layer for the mean and one for the log-variance, twice the log-scale.
        for mine, theirs in zip(linears, [examples.fc1, None, examples.fc3, examples.fc4]):
            if theirs is not None:
                mine.weight.copy_(theirs.weight)
                mine.bias.copy_(theirs.bias)
        linears[1].weight.copy_(torch.cat([examples.fc21.weight, 0.5 * examples.fc22.weight]))
        linears[1].bias.copy_(torch.cat([examples.fc21.bias, 0.5 * examples.fc22.bias]))

    x = torch.rand(32, 1, 28, 28)
    torch.manual_seed(1)
    recon_x, mu, logvar = examples(x)  # draws its noise with randn_like
    theirs = reference.loss_function(recon_x, x, mu, logvar)
    torch.manual_seed(1)
    objective = ours.objective(x, torch.randn(32, 20))
    assert torch.isclose(objective.loss.sum(), theirs, rtol=1e-5)
    assert abs(theirs.item() / 32 - 543) < 100  # a real loss of an untrained model, not zero


def test_the_matmul_floor_times_exactly_the_products_the_flop_count_counts():
    products = train_speed.step_products(batch=128)
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)
    assert all(a.shape[1] == b.shape[0] for a, b in products)
    assert flops == train_speed.TRAIN_FLOPS_PER_IMAGE * 128
    assert len(products) == 11
