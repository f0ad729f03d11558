"""The article's story: PCA, autoencoder and VAE side by side, and the latent pictures."""

import json

import torch
from PIL import Image

from conftest import TINY_MOONS
from vae_cli import compare, config, data, plots, runs, threads


def train(vae, name, *overrides):
    """Train run `name` with the tiny settings that the overrides' dataset and model kind read."""
    target = config.load(None, list(overrides))
    tiny = [o for o in TINY_MOONS if getattr(target, o.split(".")[0]).applies(o.split("=")[0].split(".")[1])]
    args = [a for o in (*tiny, *overrides) for a in ("--set", o)]
    result = vae("train", *args, "--name", name)
    assert result.exit_code == 0, result.output
    return result


def test_pca_is_the_best_linear_reconstruction(vae, runs_dir):
    train(vae, "pca", "model.kind=pca", "model.latent_dim=5")
    _, model, _ = runs.load_model(runs_dir / "pca")
    components = model.components
    assert torch.allclose(components.T @ components, torch.eye(5), atol=1e-4)  # orthonormal W
    record = runs.read_metrics(runs_dir / "pca")[0]
    # A random orthonormal basis of the same size reconstructs worse than the principal one.
    random_basis, _ = torch.linalg.qr(torch.randn(784, 5))
    test = data.load(config.load(runs_dir / "pca" / "config.yaml").data).test
    centred = test.flatten(1) - model.pixel_mean
    random_error = float(((centred @ random_basis @ random_basis.T - centred) ** 2).sum(1).mean())
    assert record["test_squared_error"] < random_error


def test_no_kl_collapses_the_noise_scale(vae, runs_dir):
    longer = ("data.train_size=2048", "train.batch_size=32", "train.epochs=5")
    train(vae, "nokl", "model.beta=0", *longer)
    train(vae, "kl", *longer)
    collapsing = [m["test_mean_log_scale"] for m in runs.read_metrics(runs_dir / "nokl")]
    kept = [m["test_mean_log_scale"] for m in runs.read_metrics(runs_dir / "kl")]
    print("mean posterior log-scale per epoch, beta=0:", collapsing, "beta=1:", kept)
    assert all(a > b for a, b in zip(collapsing[1:], collapsing[2:]))  # falls every epoch after the first
    assert collapsing[-1] < collapsing[0] - 1.5  # the noise scale shrinks below a quarter (e^-1.5)
    assert collapsing[-1] < kept[-1] - 1


def test_sampling_works_for_every_kind(vae, runs_dir):
    for kind in ("pca", "ae", "vae"):
        train(vae, kind, f"model.kind={kind}", "train.epochs=1")
        result = vae("sample", "--n", 4, "--run", runs_dir / kind)
        assert result.exit_code == 0, result.output
    _, ae, _ = runs.load_model(runs_dir / "ae")
    assert ae.prior.code_std.max() > 0 and not torch.allclose(ae.prior.code_std, torch.ones_like(ae.prior.code_std))


def test_compare_table_and_picture(vae, runs_dir, tmp_path):
    for kind in ("pca", "ae", "vae"):
        train(vae, kind, f"model.kind={kind}", "train.epochs=1")
    result = vae("compare", runs_dir / "pca", runs_dir / "ae", runs_dir / "vae", "--k", 5,
                 "--images", 50, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["pca", "ae", "vae"]
    assert lines[0].count(" - ") >= 3 and " - " not in lines[2]  # NLL undefined for pca, defined for vae
    width, height = Image.open(tmp_path / "c.png").size
    assert height == 2 * 32 * (1 + 3 * 4)  # test images + 4 rows per run, drawn twice as large


def test_compare_gives_the_same_numbers_every_time(vae, runs_dir, tmp_path):
    """Two identical comparisons print identical numbers: the importance samples behind -ELBO
    and NLL come from the seed, not from whatever the global generator holds."""
    train(vae, "vae", "train.epochs=1")
    arguments = ([runs_dir / "vae"], tmp_path / "c.png", 5, 50, (0, 1), "cpu")
    first = compare.compare(*arguments)
    torch.rand(1000)  # moves the global generator on, as any earlier work in the process would
    assert compare.compare(*arguments) == first
    other_seed = compare.compare(*arguments, seed=1)[0]
    assert other_seed["nll"] != first[0]["nll"] and other_seed["squared_error"] == first[0]["squared_error"]


def test_compare_measures_under_the_thread_count_asked_for(vae, runs_dir, tmp_path):
    """Like `vae eval`, `vae compare` takes --threads: a number is that count for its NLL, auto
    a count its controller chose from the measured speed; a bad value is one line."""
    train(vae, "vae", "train.epochs=1")
    arguments = ([runs_dir / "vae"], tmp_path / "c.png", 5, 50, (0, 1), "cpu")
    assert compare.compare(*arguments, threads=1)[0]["threads"] == torch.get_num_threads() == 1
    assert compare.compare(*arguments, threads="auto")[0]["threads"] in threads.candidates(threads.PYTORCH_DEFAULT)
    result = vae("compare", runs_dir / "vae", "--threads", "many", "--out", tmp_path / "d.png")
    assert result.exit_code == 2 and "--threads" in result.output and not (tmp_path / "d.png").exists()


def test_compare_refuses_different_datasets(vae, runs_dir, tmp_path):
    train(vae, "a", "train.epochs=1")
    train(vae, "b", "train.epochs=1", "data.image_size=16")
    result = vae("compare", runs_dir / "a", runs_dir / "b", "--out", tmp_path / "c.png")
    assert result.exit_code == 2 and "different data" in result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_writes_manifold_scatter_and_traversals(vae, runs_dir):
    train(vae, "two", "model.latent_dim=2", "train.epochs=2")
    written = plots.plot_run(None, device="cpu")
    assert written == [runs_dir / "two" / name for name in ("latent_manifold.png", "latent_scatter.png",
                                                             "latent_traversals.png")]
    assert Image.open(written[0]).size == (20 * 30 + 2,) * 2
    assert Image.open(written[1]).size == (750, 600)  # 7.5 x 6 inches at 100 dpi
    train(vae, "four", "train.epochs=1")
    assert plots.plot_run(None, device="cpu") == [runs_dir / "four" / "latent_traversals.png"]
    assert not (runs_dir / "four" / "latent_manifold.png").exists()


def test_rgb_folder_with_a_conv_vae_and_learned_gaussian_scale(vae, runs_dir, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for index in range(40):
        colour = (torch.rand(3, generator=generator) * 255).int().tolist()
        Image.new("RGB", (24 + index % 5, 20), tuple(colour)).save(folder / f"{index}.png")
    train(vae, "rgb", "data.name=folder", f"data.path={folder}", "data.channels=3", "data.image_size=16",
          "model.network=conv", "model.hidden=[8, 16]", "model.likelihood=gaussian", "model.learn_scale=true",
          "train.batch_size=8", "train.epochs=3")
    _, model, checkpoint = runs.load_model(runs_dir / "rgb")
    assert model.decode_image(model.sample_codes(2)).shape == (2, 3, 16, 16)
    assert checkpoint["model"]["likelihood.log_scale"] != torch.log(torch.tensor(0.1))  # it learned
    result = vae("eval", "--k", 10)
    assert result.exit_code == 0, result.output
    report = json.loads((runs_dir / "rgb" / "eval.json").read_text())
    assert report["likelihood"] == "gaussian" and report["neg_elbo"] >= report["nll"]
