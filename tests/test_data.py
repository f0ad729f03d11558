import numpy as np
import pytest
import torch
from PIL import Image

from vae_cli import config, data, moons
from vae_cli.datasets import DATASETS
from vae_cli.errors import VaeError


def test_moons_are_deterministic_and_in_range():
    a = data.load(config.DataConfig(train_size=64, test_size=16))
    b = data.load(config.DataConfig(train_size=64, test_size=16))
    assert a.train.shape == (64, 1, 28, 28) and a.test.shape == (16, 1, 28, 28)
    assert torch.equal(a.train, b.train) and not torch.equal(a.train[:16], a.test)
    assert a.train.min() >= 0 and a.train.max() <= 1


def test_moon_phase_is_its_lit_fraction():
    full = moons.render_one(1.0, 64).sum()
    for phase in (0.25, 0.5, 0.75):
        assert abs(float(moons.render_one(phase, 64).sum() / full) - phase) < 0.02
    assert float(moons.render_one(0.0, 64).sum() / full) < 0.02


def test_draw_writes_one_moon_to_a_png(tmp_path):
    """`vae moon`'s picture: the clean moon is render_one's to the 8-bit step; a photo-like one
    is the same for the same seed and another for another seed; a folder is refused unwritten."""
    half = moons.draw(0.5, tmp_path / "half.png", size=32, sun_angle_degrees=90)
    assert half == tmp_path / "half.png"
    pixels = torch.tensor(np.asarray(Image.open(half)), dtype=torch.float32) / 255
    assert torch.allclose(pixels, moons.render_one(0.5, 32, 90)[0], atol=1 / 255)
    photos = [moons.draw(0.7, tmp_path / f"{name}.png", size=40, photo=True, sun_angle_degrees=180, seed=seed)
              for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    first, again, other = (photo.read_bytes() for photo in photos)
    assert first == again != other and Image.open(photos[0]).size == (40, 40)
    with pytest.raises(VaeError, match="folder"):
        moons.draw(1.0, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "half.png"]


def test_every_registered_dataset_names_a_loader_that_imports():
    """A mistyped "module.function" in the registry fails here, not when someone first loads that dataset."""
    for name, dataset in DATASETS.items():
        assert callable(dataset.loader_function()), name


def test_epoch_order_is_a_seeded_permutation():
    d = data.load(config.DataConfig(train_size=100, test_size=10))
    order = d.epoch_order(seed=0, epoch=3)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.equal(order, d.epoch_order(seed=0, epoch=3))
    assert not torch.equal(order, d.epoch_order(seed=0, epoch=4))


def test_binarization_modes():
    static = data.load(config.DataConfig(train_size=64, test_size=16, binarize="static"))
    assert set(static.train.unique().tolist()) <= {0.0, 1.0}
    dynamic = data.load(config.DataConfig(train_size=64, test_size=16, binarize="dynamic"))
    assert set(dynamic.test.unique().tolist()) <= {0.0, 1.0}
    assert len(dynamic.train.unique()) > 2  # gray, resampled per batch
    rows = torch.arange(64)
    first, second = dynamic.train_batch(rows), dynamic.train_batch(rows)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)


def test_binarized_bytes_stay_bytes_and_read_as_zero_or_one(tmp_path):
    for index in range(8):
        Image.new("L", (8, 8), 30 * index).save(tmp_path / f"{index}.png")
    gray = data.load(config.DataConfig(name="folder", path=str(tmp_path), image_size=8, test_fraction=0.5))
    for mode in ("static", "dynamic"):
        binary = data.load(config.DataConfig(name="folder", path=str(tmp_path), image_size=8, test_fraction=0.5,
                                             binarize=mode))
        assert binary.test.dtype == torch.uint8 and set(binary.test.unique().tolist()) <= {0, 255}
        test, _ = binary.split("test")
        assert set(test.unique().tolist()) == {0.0, 1.0}
        # Pixels are 1 about as often as their gray value says.
        assert abs(float(test.mean()) - float(gray.split("test")[0].mean())) < 0.15
    assert binary.train.dtype == torch.uint8 and len(binary.train.unique()) > 2  # dynamic: gray until batched
    static = data.load(config.DataConfig(name="folder", path=str(tmp_path), image_size=8, test_fraction=0.5,
                                         binarize="static"))
    assert static.train.dtype == torch.uint8 and set(static.train_batch(torch.arange(4)).unique().tolist()) == {0.0, 1.0}


def test_real_mnist(mnist_root):
    d = data.load(config.DataConfig(name="mnist", root=str(mnist_root)))
    train, _ = d.split("train")
    assert train.shape == (60000, 1, 28, 28) and d.test.shape == (10000, 1, 28, 28)
    assert d.train.dtype == torch.uint8  # kept as bytes; batches become float
    assert abs(float(train.mean()) - 0.1307) < 1e-3  # the published MNIST mean
    assert torch.equal(d.train_batch(torch.arange(5)), train[:5])
    assert torch.bincount(d.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_missing_mnist_says_where_to_put_it(tmp_path, monkeypatch):
    # Make the download fail as it does offline, without touching the network.
    monkeypatch.setattr("torchvision.datasets.MNIST.mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(VaeError, match=r"put the four \*-ubyte.gz files there"):
        data.load(config.DataConfig(name="mnist", root=str(tmp_path)))


def test_folder_of_mixed_images(tmp_path, capsys):
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    (folder / "dogs").mkdir()
    Image.new("RGBA", (40, 30), (255, 0, 0, 255)).save(folder / "cats" / "a.png")
    Image.new("L", (16, 64), 128).save(folder / "cats" / "b.jpg")
    Image.new("P", (20, 20)).save(folder / "dogs" / "c.png")
    Image.new("RGB", (10, 10), (0, 0, 255)).save(folder / "dogs" / "d.bmp")
    (folder / "dogs" / "broken.png").write_bytes(b"not a png")
    d = data.load(config.DataConfig(name="folder", path=str(folder), image_size=8, channels=3,
                                    test_fraction=0.25))
    train, _ = d.split("train")
    assert train.shape == (3, 3, 8, 8) and d.test.shape == (1, 3, 8, 8)
    assert "skipped 1 unreadable image file(s)" in capsys.readouterr().err
    assert sorted(torch.cat([d.train_labels, d.test_labels]).tolist()) == [0, 0, 1, 1]
    assert d.test.dtype == torch.uint8
    red = torch.cat([train, d.split("test")[0]])[(torch.cat([d.train_labels, d.test_labels]) == 0)]
    assert any(torch.allclose(img[0], torch.ones(8, 8)) and img[1].max() == 0 for img in red)


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(VaeError, match="holds 0 readable image"):
        data.load(config.DataConfig(name="folder", path=str(tmp_path / "empty")))
