"""The decoded-image cache (cache.py): a folder is decoded once, later loads map the file; any
change of the files or of the settings, a cut or damaged cache file, a build killed halfway and
an unwritable cache folder all end with the right pixels, never with a stale cache."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from test_machine_faults import FaultyDisk
from vae_cli import cache, config, data, resources
from vae_cli.errors import VaeError

REPO = Path(__file__).resolve().parents[1]


def write_folder(folder: Path, count: int = 12) -> Path:
    """`count` 10x10 images, each a different gray, in two class subfolders."""
    for index in range(count):
        (folder / f"class{index % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("L", (10, 10), 10 * index).save(folder / f"class{index % 2}" / f"{index:03d}.png")
    return folder


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "images")


@pytest.fixture
def decodes(monkeypatch):
    """How many image files were decoded so far."""
    count = [0]
    real = data._read_or_none

    def counted(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(data, "_read_or_none", counted)
    return count


def settings(folder, **changes):
    return config.DataConfig(**{"name": "folder", "path": str(folder), "image_size": 8, **changes})


def in_memory(data_config):
    """The folder decoded without any cache: what every load must equal."""
    root = Path(data_config.path)
    files = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*.png"))]
    return data._decode_folder(cache.MemoryBuilder(), root, files, data_config)


def assert_same(loaded, expected):
    n_test = expected.meta["n_test"]
    assert loaded.test.dtype == torch.uint8  # both splits stay bytes; batches become float
    assert torch.equal(loaded.test, expected.images[:n_test])
    assert torch.equal(loaded.train, expected.images[n_test:])
    assert torch.equal(torch.cat([loaded.test_labels, loaded.train_labels]), expected.labels)
    assert loaded.classes == expected.meta["classes"]


def cache_files():
    return sorted(cache.location().glob("*.pixels"))


def mapped(path: Path) -> bool:
    return any(str(path) in line for line in Path("/proc/self/maps").read_text().splitlines())


def test_the_second_load_maps_the_cache_instead_of_decoding(folder, decodes):
    first = data.load(settings(folder))
    assert decodes[0] == 12 and len(cache_files()) == 1
    second = data.load(settings(folder))
    assert decodes[0] == 12  # nothing decoded again
    assert second.train.dtype == torch.uint8 and mapped(cache_files()[0])
    assert_same(second, in_memory(settings(folder)))
    assert_same(first, in_memory(settings(folder)))
    assert second.classes == ["class0", "class1"] and len(second.test) == 1


@pytest.mark.parametrize("change", ["rewritten", "added", "removed"])
def test_a_changed_folder_is_decoded_again(folder, decodes, change):
    data.load(settings(folder))
    target = folder / "class0" / "000.png"
    if change == "rewritten":
        Image.new("L", (10, 10), 255).save(target)
        os.utime(target, ns=(1, 1))  # a new modification time even on a coarse clock
    elif change == "added":
        Image.new("L", (10, 10), 200).save(folder / "class1" / "new.png")
    else:
        target.unlink()
    before = decodes[0]
    loaded = data.load(settings(folder))
    assert decodes[0] > before
    assert_same(loaded, in_memory(settings(folder)))
    assert len(cache_files()) == 1  # the stale file was replaced, not kept beside the new one


@pytest.mark.parametrize("change", [{"image_size": 9}, {"channels": 3}, {"crop": "object"}, {"test_fraction": 0.5}])
def test_other_settings_get_their_own_cache(folder, decodes, change):
    data.load(settings(folder))
    before = decodes[0]
    loaded = data.load(settings(folder, **change))
    assert decodes[0] == before + 12
    assert len(cache_files()) == 2
    data.load(settings(folder))
    assert decodes[0] == before + 12  # the first settings' cache is still there
    assert_same(loaded, in_memory(settings(folder, **change)))


@pytest.mark.parametrize("damage, problem", [
    (lambda path: os.truncate(path, path.stat().st_size - 100), "truncated"),
    (lambda path: os.truncate(path, path.stat().st_size // 2), "truncated"),
    (lambda path: path.write_bytes(b""), "truncated"),
    (lambda path: path.write_bytes(b"\x01" + path.read_bytes()[1:]), "corrupt (its checksum does not match)"),
    (lambda path: path.write_bytes(path.read_bytes().replace(b'"count": 12', b'"count": 11')), "corrupt"),
])
def test_a_damaged_cache_is_found_and_rebuilt(folder, decodes, capsys, damage, problem):
    data.load(settings(folder))
    damage(cache_files()[0])
    capsys.readouterr()
    loaded = data.load(settings(folder))
    assert decodes[0] == 24
    warning = capsys.readouterr().err
    assert problem in warning and "decoding the folder again" in warning and len(warning.splitlines()) == 1
    data.load(settings(folder))
    assert decodes[0] == 24  # the rebuilt cache is used
    assert_same(loaded, in_memory(settings(folder)))


KILLED_BUILD = """
import os, signal, sys
from vae_cli import cache, config, data, resources
real_write = cache.FileBuilder._write
writes = [0]
def write_then_die(self, handle, chunk):
    real_write(self, handle, chunk)
    if handle == self.handle:  # the first piece of the cache file proper is written: kill -9
        os.kill(os.getpid(), signal.SIGKILL)
cache.FileBuilder._write = write_then_die
data.load(config.DataConfig(name="folder", path=sys.argv[1], image_size=8))
"""


def test_a_build_killed_halfway_never_looks_complete(folder, decodes):
    result = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(folder)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    assert cache_files() == []  # only the temporaries exist
    assert len(list(cache.location().glob(".*"))) == 2
    assert [entry["problem"] for entry in cache.entries()] == ["unfinished build"] * 2
    loaded = data.load(settings(folder))
    assert decodes[0] == 12
    assert_same(loaded, in_memory(settings(folder)))
    assert not list(cache.location().glob(".*"))  # the dead build's files are removed


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                           (errno.ENOSPC, "no space left")])
def test_an_unwritable_cache_folder_warns_once_and_decodes_into_memory(folder, monkeypatch, capsys, code, problem):
    disk = FaultyDisk(monkeypatch, cache.location())
    disk.fill_after(300) if code == errno.ENOSPC else disk.fail_everything(code)  # full after the first images
    loaded = data.load(settings(folder))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and problem in lines[0] and str(cache.location()) in lines[0], lines
    assert "decoding into memory this time" in lines[0] and "VAE_CACHE" in lines[0]
    assert_same(loaded, in_memory(settings(folder)))
    disk.heal()
    assert cache_files() == [] and not list(cache.location().glob(".*"))


def test_a_folder_without_two_readable_images_is_refused_and_leaves_no_cache(tmp_path):
    (tmp_path / "one").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "one" / "a.png")
    with pytest.raises(VaeError, match="holds 1 readable image"):
        data.load(settings(tmp_path / "one"))
    assert not list(cache.location().glob("*.pixels")) and not list(cache.location().glob(".*"))


def test_image_files_are_listed_in_the_order_paths_sort(tmp_path):
    """The order fixes the split: it must stay the order of sorted Paths that runs were made with."""
    for name in ["a/x.png", "a-b/x.png", "a.b/y.JPG", "top.png", "a/b/c.png", "a/notes.txt", "Z/q.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "a")  # a link to a folder is not followed
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".webp"} and p.is_file()
                      and "link" not in p.parts)
    assert data.image_files(tmp_path) == [p.relative_to(tmp_path).as_posix() for p in expected]
    assert data.image_files(tmp_path)[:4] == ["Z/q.webp", "a/b/c.png", "a/x.png", "a-b/x.png"]  # not string order


def test_the_cache_folder_follows_vae_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_CACHE", str(tmp_path / "a"))
    assert cache.location() == tmp_path / "a"
    monkeypatch.delenv("VAE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.location() == tmp_path / "xdg" / "vae-cli"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.location() == tmp_path / "home" / ".cache" / "vae-cli"


def test_the_cache_command_lists_and_clears(vae, folder, decoded_image_cache):
    listed = vae("cache")
    assert listed.exit_code == 0 and f"no decoded-image caches in {decoded_image_cache}" in listed.output
    data.load(settings(folder))
    data.load(settings(folder, channels=3))
    listed = vae("cache")
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if str(folder) in line]
    assert len(rows) == 2 and all(" 12 " in row for row in rows), listed.output
    assert any("1x8x8" in row for row in rows) and any("3x8x8" in row for row in rows)
    cleared = vae("cache", "--clear")
    assert cleared.exit_code == 0 and "removed 2 cache file(s)" in cleared.output
    assert not list(decoded_image_cache.iterdir())
    assert "no decoded-image caches" in vae("cache").output


def test_training_on_an_unwritable_cache_folder_goes_on_from_memory(vae, folder, monkeypatch):
    FaultyDisk(monkeypatch, cache.location()).fail_everything(errno.EROFS)
    result = vae("train", "--set", "data.name=folder", "--set", f"data.path={folder}", "--set", "data.image_size=8",
                 "--set", "model.network=mlp", "--set", "model.hidden=[16]", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "read-only" in lines[0] and "decoding into memory" in lines[0], lines
    assert "epoch 1/1" in result.stdout


# Each torchrun worker records in DECODE_LOG that it decoded the folder, then runs `vae train`.
LOGGED_WORKER = """
import os, sys
from vae_cli import data
real = data._decode
def logged(*args):
    with open(os.environ["DECODE_LOG"], "a") as log:
        log.write(os.environ["RANK"] + "\\n")
    yield from real(*args)
data._decode = logged
from vae_cli.__main__ import main
sys.argv[0] = "vae"
main()
"""


def test_torchrun_processes_share_one_cache(tmp_path, decoded_image_cache):
    folder = write_folder(tmp_path / "images", count=40)
    worker, log = tmp_path / "worker.py", tmp_path / "decodes.log"
    worker.write_text(LOGGED_WORKER)
    env = {**os.environ, "VAE_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1", "DECODE_LOG": str(log),
           "PYTHONPATH": str(REPO)}
    overrides = ["data.name=folder", f"data.path={folder}", "data.image_size=8", "model.network=mlp",
                 "model.hidden=[16]", "train.batch_size=8", "train.epochs=1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
               "train", *[a for o in overrides for a in ("--set", o)]]
    for run in range(2):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warning" not in result.stderr, result.stderr
        assert "epoch 1/1" in result.stdout
    assert len(log.read_text().splitlines()) == 1  # one rank decoded, once; every other start mapped the file
    assert len(cache_files()) == 1


def test_the_memory_estimate_counts_the_folders_images_and_on_the_cpu_not_their_mapped_pixels(folder, monkeypatch):
    run_config = config.load(None, ["data.name=folder", f"data.path={folder}", "data.image_size=8",
                                    "model.network=mlp", "model.hidden=[16]"])
    parts = resources.estimate(run_config)
    assert parts["data"] == 12 * 8 * 8  # both splits, one byte a pixel
    # Just enough free memory for the model and a batch, not for the pixels: fine on the CPU, where
    # they are mapped from the cache, refused on an accelerator, which holds a copy.
    monkeypatch.setattr(resources, "available_memory", lambda device: parts["model"] + parts["activations"] + 1)
    resources.check_training(run_config, torch.device("cpu"), parts)
    with pytest.raises(VaeError, match="this run needs about"):
        resources.check_training(run_config, torch.device("meta"), parts)
