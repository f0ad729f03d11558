"""`vae explore` end to end: the real command serves the page, Debian's chromium shows it
(driven by Playwright, pointed at the system's browser: nothing is downloaded), and the test
does what a person does: moves a slider, uploads a full and a half moon and blends them,
uploads a file that is no image, switches to a 2-D run and clicks its map.

Screenshots go to $VAE_EXPLORE_SCREENSHOTS when it is set (`make explore-screenshots` writes
the ones docs/explore.md shows), else to the test's temporary folder.
"""

import base64
import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import photo_moons
from conftest import TINY_MOONS
from vae_cli.cli import app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What works headless in a container: no sandbox (it needs user namespaces), no GPU, and none
# of the browser's own calls home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000  # the first answers load a run: seconds on a busy machine


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A tiny run with a 2-D code, for the map; the moons are blended by builtin:moons, the
    shipped default config as trained once for the package."""
    root = tmp_path_factory.mktemp("explore-browser") / "runs"
    settings = [*TINY_MOONS, "model.latent_dim=2", "train.threads=1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_RUNS", str(root))
        result = CliRunner().invoke(app, ["train", "--name", "flat", *sum((["--set", s] for s in settings), [])])
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def served(runs_root):
    """`vae explore` on a free port, as a person starts it; stopped with Ctrl-C afterwards."""
    process = subprocess.Popen([sys.executable, "-m", "vae_cli", "explore", "--run", "builtin:moons", "--port", "0",
                                "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"VAE_RUNS": str(runs_root)})
    line = process.stdout.readline()
    match = re.search(r"http://\S+/", line)
    assert match, (line, process.poll() is not None and process.stderr.read())
    yield match.group(0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "stopped" in out, err


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        message = "Debian's chromium is not installed: apt-get install chromium (.ci/run does)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        # A fresh profile in the test's own folder, never the user's.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
            headless=True, viewport={"width": 1280, "height": 1000})
        yield context
        context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = os.environ.get("VAE_EXPLORE_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser, served):
    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("requestfailed", lambda request: problems.append(f"{request.url}: {request.failure}"))
    page.goto(served)
    page.wait_for_selector("body[data-run='builtin:moons']", timeout=WAIT_MS)
    yield page
    page.close()
    assert not problems, problems


def shown(page, selector: str) -> torch.Tensor:
    """The image an <img> shows, at the model's resolution, as a (1, H, W) tensor in [0, 1]."""
    url = page.get_attribute(selector, "src")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).unsqueeze(0) / 255


def wait_for_new_image(page, selector: str, before: str):
    page.wait_for_function("([selector, before]) => document.querySelector(selector).src !== before",
                           arg=[selector, before], timeout=WAIT_MS)


def set_blend(page, t: str):
    page.fill("#t", t)
    page.wait_for_selector(f"#blend[data-t='{t}']", timeout=WAIT_MS)


def test_moving_a_slider_changes_the_decoded_image(page, screenshots):
    page.wait_for_function("document.querySelector('#decoded').src.startsWith('data:image/png')", timeout=WAIT_MS)
    before_url, before = page.get_attribute("#decoded", "src"), shown(page, "#decoded")
    first = page.locator("#sliders input").first  # the most used dimension
    first.fill(first.get_attribute("max"))
    wait_for_new_image(page, "#decoded", before_url)
    after = shown(page, "#decoded")
    assert (after - before).abs().mean() > 0.01, "the image hardly changed"
    assert page.locator("#sliders input").count() == 8  # the built-in moons model's code
    page.screenshot(path=str(screenshots / "explore_sliders.png"), full_page=True)


def test_full_and_half_moon_blend_through_a_gibbous_moon(page, tmp_path, screenshots):
    full = photo_moons.write(tmp_path / "full.jpg", 1.0, 320, seed=1, radius=0.3)
    half = photo_moons.write(tmp_path / "half.jpg", 0.5, 320, seed=2, radius=0.3)
    for end, path in (("a", full), ("b", half)):
        loaded = page.get_attribute(f"#end-{end}", "data-loaded")
        page.set_input_files(f"#end-{end} input[type=file]", str(path))
        page.wait_for_function("([end, loaded]) => document.querySelector(`#end-${end}`).dataset.loaded !== loaded",
                               arg=[end, loaded], timeout=WAIT_MS)
    set_blend(page, "0")
    decoded_full = shown(page, "#blend")
    set_blend(page, "0.5")
    lit = photo_moons.lit_fraction(shown(page, "#blend"), decoded_full)
    print(f"the blend's middle: lit fraction {lit:.2f} (full 1, half 0.5)")
    assert 0.6 < lit < 0.9, f"the middle of the blend is not a gibbous moon: lit fraction {lit:.2f}"
    assert page.get_attribute("#fade-b", "style") == "opacity: 0.5;"  # the cross-fade beside it
    assert page.is_hidden("#error")
    page.screenshot(path=str(screenshots / "explore_blend.png"), full_page=True)


def test_a_file_that_is_no_image_is_named_in_the_page_and_the_server_goes_on(page, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("a shopping list, not a picture")
    page.set_input_files("#end-a input[type=file]", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=WAIT_MS)
    assert page.inner_text("#error") == "notes.png: not an image file PIL can read: pass a PNG or JPEG"
    before = page.get_attribute("#decoded", "src")
    page.click("#random")
    wait_for_new_image(page, "#decoded", before)
    assert page.is_hidden("#error")


def test_the_run_picker_opens_a_2d_run_and_its_map_decodes_a_click(page, screenshots):
    assert page.locator("#run option").evaluate_all("options => options.map(o => o.value)") == ["flat", "builtin:moons"]
    assert page.is_hidden("#map-panel")
    page.select_option("#run", "flat")
    page.wait_for_selector("body[data-run=flat]", timeout=WAIT_MS)
    assert page.is_visible("#map-panel") and page.locator("#sliders input").count() == 2
    page.wait_for_function("document.querySelector('#decoded').src.startsWith('data:image/png')", timeout=WAIT_MS)
    images = []
    for x, y in ((0.2, 0.5), (0.8, 0.5)):
        before = page.get_attribute("#decoded", "src")
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
        wait_for_new_image(page, "#decoded", before)
        images.append(shown(page, "#decoded"))
    assert (images[0] - images[1]).abs().mean() > 0.01, "two far apart points decoded alike"
    page.screenshot(path=str(screenshots / "explore_map.png"), full_page=True)
