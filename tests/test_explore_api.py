"""`vae explore`'s HTTP API through Starlette's test client: every answer is checked against
what the model itself gives for the same input, and bad requests get a one-line error while
the server goes on answering. The page in a real browser: tests/test_explore_browser.py."""

import asyncio
import base64
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import httpx2
import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from conftest import TINY_MOONS
from vae_cli import data, latent, moons, runs
from vae_cli.cli import app
from vae_cli.explore import explorer, server


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Two tiny moons runs, a 4-d code ("four") and a 2-d one ("two"), trained once."""
    root = tmp_path_factory.mktemp("explore") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_RUNS", str(root))
        for name, dims in (("four", 4), ("two", 2)):
            settings = [*TINY_MOONS, f"model.latent_dim={dims}", "train.epochs=3", "train.threads=1"]
            result = CliRunner().invoke(app, ["train", "--name", name, *sum((["--set", s] for s in settings), [])])
            assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def client(runs_root, monkeypatch):
    monkeypatch.setenv("VAE_RUNS", str(runs_root))
    return TestClient(server.create_app())


def pixels(url: str) -> torch.Tensor:
    """A PNG data URL as a (1, H, W) tensor in [0, 1]."""
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).unsqueeze(0) / 255


def model_of(runs_root, name):
    return runs.load_model(runs_root / name)


def as_stored(images: torch.Tensor) -> torch.Tensor:
    """What a PNG holds of images in [0, 1]: 8-bit levels."""
    return (images.clamp(0, 1) * 255).round() / 255


def png_file(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((image[0] * 255).round().byte().numpy(), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_run_list_is_what_vae_runs_lists_then_the_builtin_model(client, runs_root, monkeypatch):
    answer = client.get("/api/runs").json()
    assert [run["name"] for run in answer["runs"]] == [s["name"] for s in runs.summaries()] + ["builtin:moons"]
    assert {run["name"] for run in answer["runs"]} == {"four", "two", "builtin:moons"}
    assert answer["first"] == answer["runs"][0]["name"]  # the newest
    monkeypatch.setenv("VAE_RUNS", str(runs_root.parent / "no-runs-here"))
    assert client.get("/api/runs").json()["first"] == "builtin:moons"


def test_the_builtin_moons_model_opens_and_samples_from_its_prior_and_shipped_mixture(client):
    info = client.get("/api/model", params={"run": "builtin:moons"}).json()
    assert (info["dataset"], info["latent_dim"], info["test_images"]) == ("moons", 8, 1024)
    for sampler in ("prior", "gmm"):
        answer = client.post("/api/random", json={"run": "builtin:moons", "seed": 0, "sampler": sampler})
        assert answer.status_code == 200, answer.text
    assert client.get("/api/model", params={"run": "builtin:mars"}).json()["error"] == (
        "--run builtin:mars: no built-in model 'mars'; there is builtin:moons")


def test_model_info_orders_the_sliders_by_activity_and_maps_only_2d_codes(client):
    four = client.get("/api/model", params={"run": "four"}).json()
    assert four["latent_dim"] == 4 and four["image_size"] == 28 and "map" not in four
    variances = [dim["variance"] for dim in four["dims"]]
    assert variances == sorted(variances, reverse=True)
    assert sorted(dim["index"] for dim in four["dims"]) == [0, 1, 2, 3]
    for dim in four["dims"]:  # each slider spans the centre and at least the prior's -3..3
        assert dim["low"] <= min(-3.0, four["centre"][dim["index"]]) and dim["high"] >= max(3.0, four["centre"][dim["index"]])
    two = client.get("/api/model", params={"run": "two"}).json()
    assert len(two["map"]["codes"]) == len(two["map"]["labels"]) == 128  # the tiny run's test set
    assert all(len(code) == 2 for code in two["map"]["codes"])


def test_decode_gives_the_models_own_image_and_a_moved_slider_changes_it(client, runs_root):
    _, model, _ = model_of(runs_root, "four")
    code = [0.5, -1.0, 0.25, 2.0]
    answer = client.post("/api/decode", json={"run": "four", "code": code})
    assert answer.status_code == 200 and answer.headers["server-timing"].startswith("model;dur=")
    with torch.inference_mode():
        expected = as_stored(model.decode_image(torch.tensor([code]))[0])
    assert torch.allclose(pixels(answer.json()["image"]), expected, atol=1.5 / 255)
    moved = client.post("/api/decode", json={"run": "four", "code": [0.5, -1.0, 0.25, -2.0]}).json()
    assert (pixels(moved["image"]) - pixels(answer.json()["image"])).abs().max() > 0.05


def test_random_codes_follow_the_seed_and_the_sampler(client, runs_root):
    def random(**options):
        answer = client.post("/api/random", json={"run": "four", "temperature": 1.0, **options})
        assert answer.status_code == 200, answer.text
        return answer.json()["code"]
    assert random(seed=1) == random(seed=1) != random(seed=2)
    assert random(seed=1, temperature=0.0) == [0.0] * 4  # a VAE's prior is centred at 0
    gmm = random(seed=1, sampler="gmm")
    assert gmm != random(seed=1) and (runs_root / "four" / "sampler_gmm_best.pt").is_file()  # as vae sample stores it


def test_a_test_image_is_encoded_as_vae_interpolate_encodes_test_n(client, runs_root):
    run_config, model, _ = model_of(runs_root, "four")
    answer = client.get("/api/test-image", params={"run": "four", "index": 7}).json()
    image = data.load_references(["test:7"], run_config.data)[0]
    with torch.inference_mode():
        code = model.encode(image[None])[0][0]
    assert torch.allclose(torch.tensor(answer["code"]), code, atol=1e-5)
    assert torch.allclose(pixels(answer["input"]), as_stored(image), atol=1.5 / 255)
    assert answer["label"] == pytest.approx(float(data.load(run_config.data).test_labels[7]))  # its phase


def test_an_upload_is_read_like_an_interpolate_input(client, runs_root, tmp_path):
    run_config, model, _ = model_of(runs_root, "four")
    path = tmp_path / "half.png"
    path.write_bytes(png_file(moons.render_one(0.5, 100)))
    answer = client.post("/api/encode", params={"run": "four"}, content=path.read_bytes(),
                         headers={"x-file-name": "half.png"})
    assert answer.status_code == 200, answer.text
    image = data.load_references([str(path)], run_config.data)[0]
    with torch.inference_mode():
        code = model.encode(image[None])[0][0]
    assert torch.allclose(torch.tensor(answer.json()["code"]), code, atol=1e-5)
    assert pixels(answer.json()["input"]).shape == (1, 28, 28)


def test_the_blend_walks_the_same_path_as_vae_interpolate(client, runs_root):
    _, model, _ = model_of(runs_root, "four")
    a, b = [1.0, -0.5, 0.0, 0.3], [-0.8, 1.2, 0.4, -1.0]

    def blend(t, method):
        answer = client.post("/api/blend", json={"run": "four", "a": a, "b": b, "t": t, "method": method})
        assert answer.status_code == 200, answer.text
        return pixels(answer.json()["image"])
    for method in ("slerp", "linear"):
        with torch.inference_mode():
            path = model.decode_image(latent.interpolate_codes(torch.tensor(a), torch.tensor(b), 3, method))
        for t, expected in zip((0.0, 0.5, 1.0), path):
            assert torch.allclose(blend(t, method), as_stored(expected), atol=1.5 / 255), (method, t)
    assert (blend(0.5, "slerp") - blend(0.5, "linear")).abs().max() > 0  # the methods differ


@pytest.mark.parametrize("method, path, request_options, status, message", [
    ("get", "/api/model", {"params": {"run": "nope"}}, 404, "no run named 'nope'"),
    ("get", "/api/model", {"params": {"run": "../four"}}, 404, "not a run name"),
    ("get", "/api/model", {"params": {"run": "latest"}}, 404, "not a run name"),
    ("get", "/api/model", {}, 404, "not a run name"),
    ("post", "/api/decode", {"json": {"run": "four", "code": [1, 2]}}, 400, "a list of 4 finite numbers"),
    ("post", "/api/decode", {"content": b'{"run": "four", "code": [1, 2, NaN, 4]}'}, 400, "a list of 4 finite numbers"),
    ("post", "/api/decode", {"content": b"{not json"}, 400, "not JSON"),
    ("post", "/api/decode", {"json": [1, 2]}, 400, "not a JSON object"),
    ("post", "/api/decode", {"content": b" " * (server.MAX_JSON_BYTES + 1)}, 413, "larger than"),
    ("post", "/api/random", {"json": {"run": "four", "seed": 1, "sampler": "vamp"}}, 400, "use one of auto, prior, gmm"),
    ("post", "/api/random", {"json": {"run": "four", "seed": 1, "temperature": -1}}, 400, "temperature -1"),
    ("post", "/api/random", {"json": {"run": "four", "seed": "x"}}, 400, "seed 'x'"),
    ("post", "/api/blend", {"json": {"run": "four", "a": [0] * 4, "b": [1] * 4, "t": 2}}, 400, "t 2: use a number from 0 to 1"),
    ("post", "/api/blend", {"json": {"run": "four", "a": [0] * 4, "b": [1] * 4, "t": 0.5, "method": "cubic"}},
     400, "use one of linear, slerp"),
    ("get", "/api/test-image", {"params": {"run": "four", "index": 128}}, 400, "the test split has 128 images (0..127)"),
    ("get", "/api/test-image", {"params": {"run": "four", "index": "x"}}, 400, "index 'x': use a whole number"),
    ("post", "/api/encode", {"params": {"run": "four"}, "content": b""}, 400, "the image file is empty"),
    ("post", "/api/encode", {"params": {"run": "four"}, "content": b"GIF89a not really",
                             "headers": {"x-file-name": "cat.gif"}}, 400, "cat.gif: not an image file PIL can read"),
    ("post", "/api/encode", {"params": {"run": "four"}, "content": b"x" * (server.MAX_UPLOAD_BYTES + 1)},
     413, "larger than 20 MB"),
    ("post", "/api/decode", {"json": {"run": "four"}}, 400, "a list of 4 finite numbers"),
])
def test_a_bad_request_gets_one_line_and_the_server_keeps_serving(client, method, path, request_options, status, message):
    answer = getattr(client, method)(path, **request_options)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error and "\n" not in error
    assert client.post("/api/decode", json={"run": "four", "code": [0, 0, 0, 0]}).status_code == 200


def test_a_bug_is_one_line_in_the_page_and_the_server_goes_on(runs_root, monkeypatch):
    monkeypatch.setenv("VAE_RUNS", str(runs_root))
    client = TestClient(server.create_app(), raise_server_exceptions=False)

    def broken(self, code, label=None):
        raise RuntimeError("a bug")
    with monkeypatch.context() as patch:
        patch.setattr(explorer.Explorer, "decode", broken)
        answer = client.post("/api/decode", json={"run": "four", "code": [0, 0, 0, 0]})
    assert answer.status_code == 500
    assert answer.json()["error"].startswith("internal error (RuntimeError: a bug)")
    assert client.post("/api/decode", json={"run": "four", "code": [0, 0, 0, 0]}).status_code == 200


def test_a_truncated_image_is_refused_by_name(client):
    whole = png_file(moons.render_one(1.0, 64))
    answer = client.post("/api/encode", params={"run": "four"}, content=whole[:len(whole) // 2],
                         headers={"x-file-name": "full.png"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("full.png: the image is corrupt or truncated")


def test_the_page_and_its_files_are_served_but_nothing_outside_them(client):
    page = client.get("/")
    assert page.status_code == 200 and "<script" in page.text
    scripts = re.findall(r'src="([^"]+)"', page.text) + re.findall(r'href="([^"]+\.css)"', page.text)
    assert scripts and all(not s.startswith(("http:", "https:", "//")) for s in scripts)  # works offline
    for asset in scripts:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/static/../server.py").status_code == 404
    assert client.get("/static/%2e%2e/server.py").status_code == 404


def test_a_slow_request_does_not_hold_up_the_others(runs_root, monkeypatch):
    """The model runs in worker threads: while one decode is stuck, another is answered."""
    monkeypatch.setenv("VAE_RUNS", str(runs_root))
    app_under_test = server.create_app()
    released, stuck = threading.Event(), threading.Event()
    decode = explorer.Explorer.decode

    def slow_decode(self, code, label=None):
        if code[0] == 99.0:
            stuck.set()
            assert released.wait(10), "the second request was never answered while the first was running"
        return decode(self, code, label)
    monkeypatch.setattr(explorer.Explorer, "decode", slow_decode)

    async def both():
        transport = httpx2.ASGITransport(app=app_under_test)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get("/api/model", params={"run": "four"})
            slow = asyncio.create_task(http.post("/api/decode", json={"run": "four", "code": [99.0, 0, 0, 0]}))
            while not stuck.is_set():
                await asyncio.sleep(0.01)
            quick = await http.post("/api/decode", json={"run": "four", "code": [0, 0, 0, 0]})
            released.set()
            return quick, await slow
    quick, slow = asyncio.run(both())
    assert quick.status_code == 200 and slow.status_code == 200


# The command itself, in a subprocess as a person runs it.

def start(runs_root, *args):
    process = subprocess.Popen([sys.executable, "-m", "vae_cli", "explore", "--no-browser", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"VAE_RUNS": str(runs_root)})
    line = process.stdout.readline()
    match = re.search(r"http://\S+/", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return process, match.group(0)


def test_ctrl_c_stops_the_server_cleanly(runs_root):
    process, url = start(runs_root, "--port", "0")
    try:
        assert url.startswith("http://127.0.0.1:")  # only this machine, unless --host says otherwise
        with urllib.request.urlopen(url + "api/runs", timeout=30) as answer:
            assert b'"four"' in answer.read()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err and "error" not in err.lower()


def test_another_host_is_served_with_a_warning(runs_root):
    process, url = start(runs_root, "--port", "0", "--host", "127.0.0.2")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert url.startswith("http://127.0.0.2:")
    assert "warning: --host 127.0.0.2: the page has no login" in err


def test_a_port_in_use_or_an_unknown_run_is_a_usage_error(runs_root, monkeypatch):
    monkeypatch.setenv("VAE_RUNS", str(runs_root))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["explore", "--no-browser", "--port", str(port)])
    assert result.exit_code == 2 and f"port {port} on 127.0.0.1 is in use: choose another with --port" in result.output
    result = CliRunner().invoke(app, ["explore", "--no-browser", "--run", "nope"])
    assert result.exit_code == 2 and "no run named 'nope'" in result.output


@pytest.fixture(scope="module")
def conditional_root(tmp_path_factory):
    """A conditional run on a folder of two classes (full and half moons), trained for an epoch."""
    work = tmp_path_factory.mktemp("explore-conditional")
    for name, phase in (("full", 1.0), ("half", 0.5)):
        (work / "pictures" / name).mkdir(parents=True)
        for index in range(12):
            (work / "pictures" / name / f"{index}.png").write_bytes(png_file(moons.render_one(phase - 0.01 * index)))
    settings = ["data.name=folder", f"data.path={work / 'pictures'}", "model.conditional=true", "model.network=mlp",
                "model.hidden=[32]", "train.epochs=1", "train.threads=1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_RUNS", str(work / "runs"))
        result = CliRunner().invoke(app, ["train", "--name", "classes", *sum((["--set", s] for s in settings), [])])
        assert result.exit_code == 0, result.output
    return work / "runs"


def test_a_conditional_run_decodes_with_the_class_asked_for(conditional_root, monkeypatch):
    monkeypatch.setenv("VAE_RUNS", str(conditional_root))
    client = TestClient(server.create_app())
    info = client.get("/api/model", params={"run": "classes"}).json()
    assert info["conditional"] and info["classes"] == ["full", "half"]
    _, model, _ = model_of(conditional_root, "classes")
    code = torch.linspace(-0.5, 0.5, model.latent_dim).tolist()  # the default moons config's code size
    shown = []
    for label in (0, 1):
        answer = client.post("/api/decode", json={"run": "classes", "code": code, "label": label}).json()
        with torch.inference_mode():
            expected = as_stored(model.decode_image(torch.tensor([code]), torch.tensor([label]))[0])
        shown.append(pixels(answer["image"]))
        assert torch.allclose(shown[-1], expected, atol=1.5 / 255)
    assert (shown[0] - shown[1]).abs().max() > 0  # the class changes the image
    answer = client.post("/api/decode", json={"run": "classes", "code": code})
    assert answer.status_code == 400
    assert answer.json()["error"] == "label None: this run is conditional; give a class index 0..1 (full, half)"
    test_image = client.get("/api/test-image", params={"run": "classes", "index": 0}).json()
    assert test_image["label"] in (0, 1)  # encoded with its own class
