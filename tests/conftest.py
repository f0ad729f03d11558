import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vae_cli.cli import app

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_MOONS = ["data.train_size=512", "data.test_size=128", "model.hidden=[64]", "train.batch_size=64"]


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """Every test writes its runs into its own folder and works in a scratch directory."""
    monkeypatch.setenv("VAE_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


@pytest.fixture
def vae(runs_dir):
    """Run the real CLI in-process: vae("train", "--set", ...) -> click Result."""
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return invoke


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A writable folder holding MNIST/raw: $VAE_DATA (set by CI), else a copy of
    ../shared/data. Missing data skips the test on a developer machine and fails it in CI."""
    if os.environ.get("VAE_DATA"):
        return Path(os.environ["VAE_DATA"])
    if SHARED_DATA.is_dir():
        root = tmp_path_factory.mktemp("data")
        shutil.copytree(SHARED_DATA / "MNIST", root / "MNIST")
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return root
    if os.environ.get("CI"):
        pytest.fail("CI must provide real MNIST: set VAE_DATA or put shared/data beside the checkout")
    pytest.skip("real MNIST not available (set VAE_DATA)")
