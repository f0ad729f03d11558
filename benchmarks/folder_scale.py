"""Image folders of real size: what the decoded-image cache (vae_cli/cache.py) buys, measured
against today's in-memory path in the same run. Run by hand (not a test):

    .venv/bin/python benchmarks/folder_scale.py [--sizes 10000 100000] [--image-size 32]
        [--steps 300] [--rounds 2] [--workdir DIR]

For each size it writes a synthetic folder of PNGs (grayscale, --image-size square, ten class
subfolders; kept under --workdir, default a temporary folder, and reused if already there),
then, each in a process of its own:
- first start: data.load with an empty cache folder (decodes the folder into the cache);
- second start: data.load again (maps the cache);
- training: data.load, then --steps steps of the default conv VAE through the real Trainer (one
  thread), from the cache's map and from the in-memory path (data decoded into RAM as before
  the cache; it decodes the whole folder at every start). The two take turns for --rounds
  rounds so that a busy spell of the machine hits both; the best round of each counts.
Memory is the peak of the process's anonymous resident memory (RssAnon, sampled every 5 ms):
the memory a process holds. Pages of the mapped cache file are the kernel's page cache, which
it drops when memory is short (RssFile, printed beside it).

Prints the ratios the cache must meet with the machine's load average beside them: second
start / first start <= 0.10, peak memory growth from the smallest to the largest size < 10%,
training throughput from the cache / in memory >= 0.90.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CLASSES = 10


def load_average() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def make_folder(folder: Path, count: int, size: int) -> Path:
    """`count` PNGs: a bright disk of random size and place on a gradient, with noise, so that
    they compress and decode like small photos rather than flat colour."""
    import torch
    from PIL import Image
    done = folder / f".complete-{count}-{size}"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for label in range(CLASSES):
        (folder / f"class{label}").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    coordinates = torch.arange(size, dtype=torch.float32)
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        centre = torch.rand(n, 2, 1, 1, generator=generator) * size
        radius = (0.1 + 0.3 * torch.rand(n, 1, 1, generator=generator)) * size
        inside = ((coordinates.view(1, -1, 1) - centre[:, 0]) ** 2
                  + (coordinates.view(1, 1, -1) - centre[:, 1]) ** 2) < radius ** 2
        pixels = 40 + coordinates.view(1, 1, -1) * (60 / size) + 120 * inside + 20 * torch.rand(n, size, size, generator=generator)
        pixels = pixels.clamp(0, 255).to(torch.uint8).numpy()
        for offset in range(n):
            index = start + offset
            Image.fromarray(pixels[offset], "L").save(folder / f"class{index % CLASSES}" / f"{index:06d}.png")
    done.touch()
    return folder


class PeakMemory:
    """Peak RssAnon and RssFile of this process, sampled in a thread."""

    def __init__(self):
        self.anon = self.file = 0
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while self.running:
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            self.anon = max(self.anon, int(fields["RssAnon"].split()[0]) * 1024)
            self.file = max(self.file, int(fields["RssFile"].split()[0]) * 1024)
            time.sleep(0.005)

    def stop(self) -> dict:
        self.running = False
        self.thread.join()
        return {"peak_anon_mb": self.anon / 1e6, "peak_file_mb": self.file / 1e6}


def worker(folder: Path, image_size: int, source: str, steps: int) -> dict:
    """One measurement in this process: data.load's time, then `steps` training steps."""
    import torch
    torch.set_num_threads(1)
    from vae_cli import cache, config, data, models
    from vae_cli.training import Trainer
    memory = PeakMemory()
    if source == "memory":  # today's in-memory path: decode into RAM, no cache
        cache.load_or_build = lambda root, files, settings, shape, build: build(cache.MemoryBuilder())
    run_config = config.load(None, ["data.name=folder", f"data.path={folder}", f"data.image_size={image_size}",
                                    "train.threads=1", "train.device=cpu"])
    started = time.perf_counter()
    loaded = data.load(run_config.data)
    result = {"load_s": time.perf_counter() - started, "images": len(loaded.train) + len(loaded.test)}
    if steps:
        torch.manual_seed(0)
        model = models.build(run_config, loaded.classes)
        with tempfile.TemporaryDirectory() as run_dir:
            trainer = Trainer(model, loaded, run_config, Path(run_dir), torch.device("cpu"))
            order = loaded.epoch_order(0, 0)
            batch = run_config.train.batch_size
            steps = min(steps, len(order) // batch)
            trainer.take_step(order[:batch])  # warm-up: first-call allocations
            started = time.perf_counter()
            for step in range(1, steps + 1):
                trainer.take_step(order[step * batch:(step + 1) * batch])
            result["images_per_s"] = steps * batch / (time.perf_counter() - started)
            result["steps"] = steps
    return {**result, **memory.stop()}


def measure(folder: Path, image_size: int, source: str, steps: int, cache_folder: Path) -> dict:
    command = [sys.executable, __file__, "--worker", source, "--folder", str(folder),
               "--image-size", str(image_size), "--steps", str(steps)]
    started = time.perf_counter()
    process = subprocess.run(command, env={**os.environ, "VAE_CACHE": str(cache_folder), "OMP_NUM_THREADS": "1"},
                             capture_output=True, text=True, check=True)
    result = json.loads(process.stdout.strip().splitlines()[-1])
    return {**result, "process_s": time.perf_counter() - started, "load": load_average()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300, help="training steps timed per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="where the folders go (default: a temporary one)")
    parser.add_argument("--worker", choices=("cache", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.folder, args.image_size, args.worker, args.steps)))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="folder-scale-"))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, {load_average()}; folders in {workdir}")
    rows = {}
    for count in args.sizes:
        started = time.perf_counter()
        folder = make_folder(workdir / f"images-{count}", count, args.image_size)
        print(f"{count:,} {args.image_size}x{args.image_size} grayscale PNGs ready in {time.perf_counter() - started:.0f} s "
              f"({load_average()})", flush=True)
        cache_folder = workdir / f"cache-{count}"
        shutil.rmtree(cache_folder, ignore_errors=True)
        first = measure(folder, args.image_size, "cache", 0, cache_folder)
        second = measure(folder, args.image_size, "cache", 0, cache_folder)
        trained = {"cache": [], "memory": []}
        for _ in range(args.rounds):
            for source in ("memory", "cache"):
                trained[source].append(measure(folder, args.image_size, source, args.steps, cache_folder))
        best = {source: max(runs, key=lambda r: r["images_per_s"]) for source, runs in trained.items()}
        rows[count] = {"first": first, "second": second, **best,
                       "cache_mb": sum(p.stat().st_size for p in cache_folder.glob("*.pixels")) / 1e6}
        for name, result in (("first start", first), ("second start", second)):
            print(f"  {name:13s} data.load {result['load_s']:7.2f} s, whole process {result['process_s']:6.1f} s, "
                  f"peak anon {result['peak_anon_mb']:6.0f} MB  ({result['load']})", flush=True)
        for source, result in best.items():
            rounds = ", ".join(f"{r['images_per_s']:.0f}" for r in trained[source])
            print(f"  train {source:7s} {result['images_per_s']:7.0f} img/s over {result['steps']} steps "
                  f"(start {result['load_s']:.2f} s), peak anon {result['peak_anon_mb']:6.0f} MB, "
                  f"peak file-backed {result['peak_file_mb']:6.0f} MB  ({result['load']}); "
                  f"all rounds: {rounds} img/s", flush=True)
        shutil.rmtree(cache_folder, ignore_errors=True)

    small, large = rows[min(rows)], rows[max(rows)]
    print(f"\nratios ({load_average()} at the end; the machine is shared, figures move with the load):")
    for count, row in rows.items():
        print(f"  {count:>7,} images: second start / first start (data.load) "
              f"{row['second']['load_s'] / row['first']['load_s']:.3f} (need <= 0.10)   "
              f"whole process {row['second']['process_s'] / row['first']['process_s']:.3f}   "
              f"train img/s cache / memory {row['cache']['images_per_s'] / row['memory']['images_per_s']:.3f} "
              f"(need >= 0.90)   cache file {row['cache_mb']:.0f} MB")
    if len(rows) > 1:
        for source in ("cache", "memory"):
            growth = large[source]["peak_anon_mb"] / small[source]["peak_anon_mb"] - 1
            print(f"  peak anon memory training from the {source}, {min(rows):,} -> {max(rows):,} images: "
                  f"{small[source]['peak_anon_mb']:.0f} -> {large[source]['peak_anon_mb']:.0f} MB, "
                  f"{100 * growth:+.1f}%" + (" (need < +10%)" if source == "cache" else ""))
        growth = large["first"]["peak_anon_mb"] / small["first"]["peak_anon_mb"] - 1
        print(f"  peak anon memory of the first start (building the cache): {small['first']['peak_anon_mb']:.0f} -> "
              f"{large['first']['peak_anon_mb']:.0f} MB, {100 * growth:+.1f}%")


if __name__ == "__main__":
    main()
