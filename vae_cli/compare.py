"""`vae compare`: finished runs side by side on the same test images and the same random codes."""

from pathlib import Path

import torch

from . import data as data_module
from . import device as device_module
from . import evaluation, files, latent, runs, samplers
from . import threads as threads_module
from .errors import UsageError
from .images import save_labeled_rows

SHOWN = 10
SAMPLE_SEED = 0


def load_runs(run_dirs: list[Path], device="cpu", checkpoint: str = "best"):
    loaded = [(run_dir, *runs.load_model(run_dir, checkpoint, device=device)) for run_dir in run_dirs]
    for run_dir, _, model, _ in loaded:
        runs.refuse_conditional(model, run_dir, "vae compare")
    datasets = {f"{run_dir.name}: {c.data.name} {c.data.image_size}x{c.data.image_size}x{c.data.channels}"
                for run_dir, c, _, _ in loaded}
    if len({entry.split(": ", 1)[1] for entry in datasets}) > 1:
        raise UsageError(f"these runs use different data ({', '.join(sorted(datasets))}): "
                         f"compare runs of one dataset")
    return loaded


@torch.inference_mode()
def compare(run_dirs: list[Path], out: Path, k: int, n_images: int, pair: tuple[int, int],
            device: str = "auto", checkpoint: str = "best", seed: int = 0, threads="auto") -> list[dict]:
    """One row of numbers per run and one picture: per run, reconstructions of the same test
    images, samples decoded from the same noise through the model's prior and through the
    Gaussian mixture fitted to its training codes, and the same pair of images interpolated.

    The numbers include how well each sampler describes where real codes lie: the mean
    log-density of the test images' codes under the prior and under the mixture, per code
    dimension. A sampler that puts its mass where no code is decodes garbage. The -ELBO and NLL
    come from importance samples drawn from `seed`, anew for each run, as `vae eval --seed` does.

    `device` and `threads` are values config.check_device and config.check_threads accept (the
    NLL's importance samples take minutes at a large k: `auto` picks the thread count from their
    measured speed, as `vae eval` does); `out` is checked writable before any run loads."""
    files.check_can_write(out)
    device = device_module.choose(device)
    controller = threads_module.for_setting(threads, device)
    loaded = load_runs(run_dirs, device, checkpoint)
    stored = data_module.load(loaded[0][1].data, device).test
    test = data_module.as_float(stored[:max(n_images, SHOWN)])
    measured = test[:n_images]
    a, b = (data_module.as_float(data_module.image_at(stored, index, "test", f"--pair {pair[0]} {pair[1]}"))
            for index in pair)
    rows, picture = [], [("test images", test[:SHOWN])]
    for run_dir, run_config, model, saved in loaded:
        row = {"run": run_dir.name, "kind": run_config.model.kind, "latent_dim": run_config.model.latent_dim,
               "squared_error": evaluation.squared_error(model, measured)}
        mixture = samplers.gmm_for_run(run_dir, run_config, model, checkpoint, saved, device)
        codes = model.encode(measured)[0]
        row["code_ll_prior"] = float(model.prior.log_prob(codes).mean()) / codes.shape[1]
        row["code_ll_gmm"] = float(mixture.log_prob(codes.cpu()).mean()) / codes.shape[1]
        if model.defines_density:
            report = evaluation.evaluate(model, measured, k, 100, seed, timed=controller.timed)
            row |= {key: report[key] for key in ("neg_elbo", "nll", "mean_posterior_scale", "active_units")}
            row["threads"] = controller.count
        rows.append(row)
        picture += [
            (f"{run_dir.name}\nreconstructions", model.reconstruct(test[:SHOWN])),
            (f"{run_dir.name}\nrandom codes", latent.sample_images(model, SHOWN, SAMPLE_SEED)),
            (f"{run_dir.name}\nGMM codes", latent.sample_images(model, SHOWN, SAMPLE_SEED, sampler=mixture)),
            (f"{run_dir.name}\ninterpolation", latent.interpolation_strip(model, a, b, SHOWN, "linear")),
        ]
    save_labeled_rows(picture, out)
    return rows
