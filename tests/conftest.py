import json
import os
import shutil
from pathlib import Path

# cuBLAS reads this before its first handle: it makes the CUDA tests that turn on
# deterministic algorithms legal (and changes nothing on the CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vae_cli.cli import app  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# A small mlp: the tests that use it are about training, files and commands, not the network.
TINY_MOONS = ["data.train_size=512", "data.test_size=128", "model.network=mlp", "model.hidden=[64]", "train.batch_size=64"]
# benchmarks/gpu_check.sh --dry-run sets this to cpu: the tests marked cuda then run on the CPU.
CHECK_DEVICE = os.environ.get("VAE_CHECK_DEVICE") or ("cuda" if torch.cuda.is_available() else None)


def pytest_collection_modifyitems(config, items):
    """Tests marked cuda skip cleanly where there is no GPU (and no dry run asked for)."""
    if CHECK_DEVICE is not None:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: benchmarks/gpu_check.sh runs these "
                                   "(--dry-run runs them on the CPU)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture
def figure(request):
    """figure(name, value): a measured number for benchmarks/gpu_check.sh's summary, appended
    to the JSON-lines file $VAE_CHECK_FIGURES when it is set."""
    def record(name: str, value):
        path = os.environ.get("VAE_CHECK_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"test": request.node.name, "name": name, "value": value}) + "\n")
    return record


@pytest.fixture(scope="session", autouse=True)
def session_image_cache(tmp_path_factory):
    """The decoded-image cache folder (cache.py) of module- and session-scoped fixtures, which
    build before any test's own: never ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_CACHE", str(tmp_path_factory.mktemp("vae-cache-shared")))
        yield


@pytest.fixture(autouse=True)
def decoded_image_cache(session_image_cache, tmp_path_factory, monkeypatch):
    """Every test gets its own, empty decoded-image cache folder (cache.py), never ~/.cache."""
    folder = tmp_path_factory.mktemp("vae-cache")
    monkeypatch.setenv("VAE_CACHE", str(folder))
    return folder


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
