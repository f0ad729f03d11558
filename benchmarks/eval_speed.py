"""Speed of `vae eval`'s importance weights against the implementation they replaced (which
decoded against k copies of the batch made with x.repeat), on one machine in one run. Run by
hand (not a test):

    .venv/bin/python benchmarks/eval_speed.py [--hidden 300 300] [--images 200] [--k 1000]

A randomly initialised MLP VAE on random binary images (the time does not depend on the
weights); the two take turns for --rounds rounds from the same seed, so a slow spell of the
machine hits both. Prints seconds for each, the ratio, and the largest difference of the
per-image NLL between them (float32 rounding only), and the k=5000, 10,000-image time that the
new one implies.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vae_cli import config, evaluation, models  # noqa: E402
from vae_cli.objectives import log_normal  # noqa: E402


@torch.inference_mode()
def repeat_log_weights(model, x, k):
    """The baseline: the likelihood sees k stacked copies of x."""
    mean, log_scale = model.encode(x)
    chunk = max(1, evaluation.ELEMENT_BUDGET // (len(x) * x[0].numel()))
    weights = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        z = mean + torch.exp(log_scale) * torch.randn(n, *mean.shape)
        nll = model.likelihood.nll(model.decode(z.reshape(n * len(x), -1)), x.repeat(n, 1, 1, 1))
        log_prior = log_normal(z, torch.zeros_like(mean), torch.zeros_like(log_scale))
        weights.append(-nll.view(n, len(x)) + log_prior - log_normal(z, mean, log_scale))
    return torch.cat(weights)


def timed(function, model, images, k, batch_size, seed):
    torch.manual_seed(seed)
    started = time.perf_counter()
    nll = torch.cat([evaluation.iwae_nll(function(model, images[i:i + batch_size], k))
                     for i in range(0, len(images), batch_size)])
    return time.perf_counter() - started, nll


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[300, 300])
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = config.load(None, ["data.name=mnist", "model.network=mlp", f"model.hidden={args.hidden}", f"model.latent_dim={args.latent}"])
    model = models.build(cfg).eval()
    images = torch.bernoulli(torch.full((args.images, 1, 28, 28), 0.15))
    new = lambda m, x, k: evaluation.log_weights(m, x, k)[0]  # noqa: E731
    times = {"x.repeat (before)": [], "broadcast (now)": []}
    for round_ in range(args.rounds):
        for (name, function) in zip(times, (repeat_log_weights, new)):
            seconds, nll = timed(function, model, images, args.k, args.batch_size, seed=round_)
            times[name].append(seconds)
            if name.startswith("x.repeat"):
                baseline_nll = nll
        difference = float((nll - baseline_nll).abs().max())
    best = {name: min(values) for name, values in times.items()}
    for name, seconds in best.items():
        print(f"{name:>18}: {seconds:.2f} s (best of {args.rounds}) for {args.images} images, k={args.k}")
    before, now = best.values()
    print(f"speed-up {before / now:.2f}x; largest per-image NLL difference {difference:.2e} nats")
    print(f"implied k=5000 on 10,000 images: {now * 5000 / args.k * 10000 / args.images / 60:.1f} min "
          f"(was {before * 5000 / args.k * 10000 / args.images / 60:.1f} min)")


if __name__ == "__main__":
    main()
