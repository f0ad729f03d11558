"""The conditional VAE (model.conditional: true): the label reaches encoder and decoder, and
`vae sample --label` draws the class asked for."""

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from vae_cli import config, models, runs
from vae_cli.images import to_pil

SIZE = 16


def bar(direction: str, position: int) -> Image.Image:
    """A black square with one bright two-pixel bar across it."""
    image = torch.zeros(SIZE, SIZE)
    if direction == "horizontal":
        image[position:position + 2, :] = 1
    else:
        image[:, position:position + 2] = 1
    return to_pil(image[None, None], 1, padding=0)


@pytest.fixture
def bars(tmp_path):
    """A folder of two classes, one subfolder each: horizontal and vertical bars anywhere."""
    folder = tmp_path / "bars"
    for direction in ("horizontal", "vertical"):
        (folder / direction).mkdir(parents=True)
        for index in range(120):
            bar(direction, index % (SIZE - 1)).save(folder / direction / f"{index}.png")
    return folder


def orientation(images: torch.Tensor) -> torch.Tensor:
    """Per image, how much brightness varies from row to row minus from column to column:
    positive for a horizontal bar, negative for a vertical one."""
    images = images[:, 0]
    return images.mean(2).var(1) - images.mean(1).var(1)


def first_samples(picture) -> torch.Tensor:
    """The first 30 images of a 32-sample grid (6 columns, 2-pixel borders), in [0, 1]."""
    grid = pil_to_tensor(Image.open(picture))[0].float() / 255
    step = SIZE + 2
    return torch.stack([grid[2 + r * step:2 + r * step + SIZE, 2 + c * step:2 + c * step + SIZE]
                        for r in range(5) for c in range(6)]).unsqueeze(1)


def folder_settings(folder, *extra):
    settings = ["data.name=folder", f"data.path={folder}", f"data.image_size={SIZE}", "model.conditional=true",
                "model.network=mlp", "model.hidden=[128]", "model.latent_dim=2", "train.batch_size=16", "train.epochs=40", "train.lr=3e-3", *extra]
    return [a for s in settings for a in ("--set", s)]


def test_the_decoders_output_depends_on_the_label():
    model = models.build(config.load(overrides=["data.name=mnist", "model.conditional=true"]), classes=["a", "b", "c"])
    assert model.conditional and not models.build(config.load()).conditional
    code = torch.randn(4, model.latent_dim)
    first, second = model.decode(code, torch.zeros(4, dtype=torch.long)), model.decode(code, torch.ones(4, dtype=torch.long))
    assert not torch.allclose(first, second)
    with pytest.raises(ValueError, match="given the labels"):
        model.decode(code)


def test_sample_draws_the_class_asked_for(vae, runs_dir, bars):
    result = vae("train", *folder_settings(bars), "--name", "bars")
    assert result.exit_code == 0, result.output
    assert "fitted a 10-component Gaussian mixture to" in result.output  # codes fitted with their labels
    _, model, checkpoint = runs.load_model(runs_dir / "bars")
    assert checkpoint["classes"] == ["horizontal", "vertical"] and model.conditional
    for label, sign in (("horizontal", 1), ("Vertical", -1)):
        result = vae("sample", "--n", 32, "--label", label)
        assert result.exit_code == 0, result.output
        picture = runs_dir / "bars" / f"sample_n32_seed0_t1_{label}.png"
        agreeing = float((sign * orientation(first_samples(picture)) > 0).float().mean())
        print(label, "samples with the asked orientation:", agreeing)
        assert agreeing >= 0.9, (label, agreeing)

    result = vae("sample", "--n", 32, "--label", "vertical", "--sampler", "gmm")
    assert result.exit_code == 0, result.output
    picture = runs_dir / "bars" / "sample_n32_seed0_t1_gmm_vertical.png"
    assert float((orientation(first_samples(picture)) < 0).float().mean()) >= 0.9

    result = vae("sample", "--label", "diagonal")
    assert result.exit_code == 2
    assert "--label 'diagonal' is not a class of" in result.output and "use one of horizontal, vertical" in result.output

    assert vae("plot").exit_code == 0
    rows = Image.open(runs_dir / "bars" / "latent_labels.png")
    assert rows.height == 2 * 2 * (SIZE + 4)  # one row per class, drawn twice as large
    result = vae("eval", "--k", 5)
    assert result.exit_code == 0, result.output
    result = vae("interpolate", "test:0", "test:1")
    assert result.exit_code == 2 and "is conditional: vae interpolate needs --label NAME" in result.output

    # Two horizontal bars, near the top and near the bottom: the blend within their class stays horizontal.
    ends = []
    for position in (2, SIZE - 4):
        ends.append(runs_dir / f"bar{position}.png")
        bar("horizontal", position).save(ends[-1])
    result = vae("interpolate", *ends, "--label", "horizontal", "--steps", 7, "--out", runs_dir / "blend.png")
    assert result.exit_code == 0, result.output
    strip = pil_to_tensor(Image.open(runs_dir / "blend.png"))[0].float() / 255
    frames = torch.stack([strip[2:2 + SIZE, 2 + c * (SIZE + 2):2 + c * (SIZE + 2) + SIZE] for c in range(1, 8)])
    assert bool((orientation(frames.unsqueeze(1)) > 0).all()), orientation(frames.unsqueeze(1))


def test_datasets_without_labels_are_refused_in_one_line(vae, runs_dir, tmp_path):
    result = vae("train", "--set", "model.conditional=true")
    assert result.exit_code == 2
    assert "model.conditional=true needs images with labels" in result.output
    assert "data.name=moons has none: set model.conditional=false" in result.output
    flat = tmp_path / "flat"
    flat.mkdir()
    for index in range(4):
        bar("horizontal", index).save(flat / f"{index}.png")
    result = vae("train", *folder_settings(flat))
    assert result.exit_code == 2 and f"at {flat} (no class subfolders)" in result.output
    assert "Traceback" not in result.output and not runs_dir.exists()  # the failed run left nothing
    result = vae("train", "--set", "model.kind=ae", "--set", "model.conditional=true")
    assert result.exit_code == 2 and "model.conditional does nothing for model.kind=ae" in result.output


def test_label_on_an_unconditional_run(vae, runs_dir):
    settings = ["data.train_size=64", "data.test_size=16", "model.network=mlp", "model.hidden=[16]", "train.epochs=1"]
    assert vae("train", *[a for s in settings for a in ("--set", s)]).exit_code == 0
    result = vae("sample", "--label", "7")
    assert result.exit_code == 2 and "is not conditional" in result.output
    result = vae("interpolate", "test:0", "test:1", "--label", "7")
    assert result.exit_code == 2 and "is not conditional" in result.output
