"""How fast `vae explore` answers, for the built-in moons model and an MNIST model. Run by hand
(not a test):

    nice -n 10 .venv/bin/python benchmarks/explore_speed.py [--requests 50]

The goal (issue 24): decode and encode requests answered in under 50 ms on a 2-core CPU.
`vae explore` is started as a person starts it (`--port 0 --no-browser`), over a temporary
runs folder holding an MNIST run trained for one epoch with configs/mnist.yaml (the speed of
a request does not depend on how well the model is trained; needs $VAE_DATA or ./data).
For each model and input file (an 800 px and a 320 px photo-like moon, a 28 px MNIST digit) and
each request it prints the median and 90% point of three times:

  direct      the same work called in this process (one torch thread, as the server uses):
              decode = decode_image of one code; encode = reading the image file as
              `vae interpolate` does, encoding it and decoding its reconstruction
  server      the model work inside the server, as its answer reports it (`ms`)
  browser     the round trip from the page in Debian's headless chromium: fetch() to the
              parsed JSON, measured with performance.now()

and server/direct and browser/direct ratios, so that a figure taken on a busy machine can
still be compared with another. The load average is printed before and after: this machine
is shared, and timings taken under load are slower than a person's laptop would show.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import photo_moons  # noqa: E402
from test_explore_browser import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from vae_cli import builtin, data, runs  # noqa: E402

GOAL_MS = 50.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def spread(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def timed(work, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return times


def train_mnist(runs_root: Path) -> None:
    subprocess.run([sys.executable, "-m", "vae_cli", "train", "--config", "mnist.yaml", "--name", "mnist",
                    "--set", "train.epochs=1", "--set", "train.threads=1"], check=True, capture_output=True,
                   env=os.environ | {"VAE_RUNS": str(runs_root)})


def image_files(folder: Path) -> list[tuple[str, Path]]:
    """(model, input file) pairs: photo-like full moons as a camera would give them (an 800 px
    and a 320 px JPEG: reading and cropping a picture grows with its size), an MNIST test digit
    (a 28 px PNG)."""
    digit = folder / "digit.png"
    from torchvision.utils import save_image
    config = runs.load_model(Path(os.environ["VAE_RUNS"]) / "mnist")[0]
    save_image(data.load(config.data).split("test")[0][0], digit)
    return [("builtin:moons", photo_moons.write(folder / "moon-800px.jpg", 1.0, 800, seed=3)),
            ("builtin:moons", photo_moons.write(folder / "moon-320px.jpg", 1.0, 320, seed=3)),
            ("mnist", digit)]


def direct_times(name: str, image: Path, n: int) -> dict[str, list[float]]:
    if builtin.is_builtin(name):
        config, model, _ = builtin.load(builtin.name_of(name))
    else:
        config, model, _ = runs.load_model(Path(os.environ["VAE_RUNS"]) / name)
    code = torch.randn(1, model.latent_dim)

    def encode():
        picture = data.read_input_image(image, config.data)[0]
        model.decode_image(model.encode(picture[None])[0])
    with torch.inference_mode():
        model.decode_image(code)  # the first call's set-up, as the server does it at load
        return {"decode": timed(lambda: model.decode_image(code), n), "encode": timed(encode, n)}


def server_times(url: str, name: str, image: Path, n: int) -> dict[str, list[float]]:
    def ask(path, body, headers):
        request = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["ms"]
    info = json.loads(urllib.request.urlopen(f"{url}api/model?run={name}", timeout=300).read())
    code = json.dumps({"run": name, "code": [0.1] * info["latent_dim"]}).encode()
    content = image.read_bytes()
    return {"decode": [ask("api/decode", code, {"Content-Type": "application/json"}) for _ in range(n)],
            "encode": [ask(f"api/encode?run={name}", content, {"X-File-Name": image.name}) for _ in range(n)]}


BROWSER_LOOP = """async ([name, dims, bytes, n]) => {
    const file = new Uint8Array(bytes);
    const times = {decode: [], encode: []};
    for (let i = 0; i < n; i++) {
        let start = performance.now();
        await (await fetch("api/decode", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({run: name, code: Array(dims).fill(0.1 * i / n)})})).json();
        times.decode.push(performance.now() - start);
        start = performance.now();
        await (await fetch(`api/encode?run=${encodeURIComponent(name)}`, {method: "POST", body: file})).json();
        times.encode.push(performance.now() - start);
    }
    return times;
}"""


def browser_times(url: str, inputs: list[tuple[str, Path]], dims: dict[str, int], n: int) -> list[dict]:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=CHROMIUM,
                                                                args=CHROMIUM_FLAGS, headless=True)
        page = context.new_page()
        page.goto(url)
        found = [page.evaluate(BROWSER_LOOP, [name, dims[name], list(image.read_bytes()), n]) for name, image in inputs]
        context.close()
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="requests of each kind per model")
    n = parser.parse_args().requests
    torch.set_num_threads(1)
    print(f"{datetime.now():%Y-%m-%d %H:%M}, {load()}")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["VAE_RUNS"] = str(Path(folder) / "runs")
        train_mnist(Path(folder) / "runs")
        inputs = image_files(Path(folder))
        server = subprocess.Popen([sys.executable, "-m", "vae_cli", "explore", "--port", "0", "--no-browser"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
            direct = [direct_times(name, image, n) for name, image in inputs]
            on_server = [server_times(url, name, image, n) for name, image in inputs]
            dims = {name: json.loads(urllib.request.urlopen(f"{url}api/model?run={name}").read())["latent_dim"]
                    for name, _ in inputs}
            in_browser = browser_times(url, inputs, dims, n)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    print(f"{n} requests each; milliseconds, median / 90% point; goal: under {GOAL_MS:g} ms")
    print(f"{'model, input':30} {'request':8} {'direct':>13} {'server':>13} {'browser':>13} {'server/direct':>14} {'browser/direct':>15}")
    for index, (name, image) in enumerate(inputs):
        for kind in ("decode", "encode"):
            rows = [spread(times[index][kind]) for times in (direct, on_server, in_browser)]
            cells = " ".join(f"{median:6.1f} /{p90:6.1f}" for median, p90 in rows)
            verdict = "ok" if rows[2][0] < GOAL_MS else "over the goal"
            print(f"{name + ', ' + image.name:30} {kind:8} {cells} {rows[1][0] / rows[0][0]:14.2f} "
                  f"{rows[2][0] / rows[0][0]:15.2f}  {verdict}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
