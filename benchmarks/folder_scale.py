"""Image folders of real size: what the decoded-image cache (vae_cli/cache.py) buys, measured
against today's in-memory path in the same run. Run by hand (not a test):

    .venv/bin/python benchmarks/folder_scale.py [--sizes 10000 100000] [--image-size 32]
        [--steps 300] [--workdir DIR]

For each size it writes a synthetic folder of PNGs (grayscale, --image-size square, ten class
subfolders; kept under --workdir, default a temporary folder, and reused if already there),
then, each in a process of its own:
- first start: data.load with an empty cache folder (decodes the folder into the cache);
- second start: data.load again (maps the cache);
- memory: data.load, then --steps steps of the default conv VAE through the real Trainer (one
  thread), from the cache's map, and the same from the in-memory path (the folder decoded into
  RAM as before the cache; it decodes the whole folder at every start). Memory is the peak of
  the process's anonymous resident memory (RssAnon, sampled every 5 ms): the memory a process
  holds. Pages of the mapped cache file are the kernel's page cache, which it drops when memory
  is short (RssFile, printed beside it).
- throughput: one process loads both and trains two identical models, one from each, taking
  turns every 10 steps for --steps steps each (epochs wrap around), so that the busy spells
  of a shared machine hit both alike; images/s of each.

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


def load(folder: Path, image_size: int, source: str):
    """The run config, its data from the cache's map or, as before the cache, in memory, and
    the seconds data.load took."""
    from vae_cli import cache, config, data
    run_config = config.load(None, ["data.name=folder", f"data.path={folder}", f"data.image_size={image_size}",
                                    "train.threads=1", "train.device=cpu"])
    real = cache.load_or_build
    if source == "memory":  # today's in-memory path: decode into RAM, no cache
        cache.load_or_build = lambda root, files, settings, shape, build: build(cache.MemoryBuilder())
    try:
        started = time.perf_counter()
        return run_config, data.load(run_config.data), time.perf_counter() - started
    finally:
        cache.load_or_build = real


def trainer_for(run_config, loaded, run_dir: str):
    import torch
    from vae_cli import models
    from vae_cli.training import Trainer
    torch.manual_seed(0)
    return Trainer(models.build(run_config, loaded.classes), loaded, run_config, Path(run_dir), torch.device("cpu"))


def rows_of_step(loaded, batch: int, step: int):
    """The rows of global step `step`, epochs wrapping around."""
    steps_per_epoch = len(loaded.train) // batch
    epoch, index = divmod(step, steps_per_epoch)
    return loaded.epoch_order(0, epoch)[index * batch:(index + 1) * batch]


def worker(folder: Path, image_size: int, source: str, steps: int) -> dict:
    """One measurement in this process: data.load's time and peak memory, then `steps` training
    steps; or (source "both") the two sources' training speed taking turns."""
    import torch
    import vae_cli.data  # noqa: F401  (imported before the clock starts: a start's own cost is data.load)
    torch.set_num_threads(1)
    memory = PeakMemory()
    sources = ("memory", "cache") if source == "both" else (source,)
    loaded = {name: load(folder, image_size, name) for name in sources}
    result = {"load_s": sum(seconds for _, _, seconds in loaded.values()), "steps": steps}
    loaded = {name: (run_config, data) for name, (run_config, data, _) in loaded.items()}
    if not steps:
        return {**result, **memory.stop()}
    with tempfile.TemporaryDirectory() as run_dir:
        trainers = {name: trainer_for(run_config, data, run_dir) for name, (run_config, data) in loaded.items()}
        batch = next(iter(loaded.values()))[0].train.batch_size
        seconds = dict.fromkeys(trainers, 0.0)
        for name, trainer in trainers.items():  # warm-up: first-call allocations
            trainer.take_step(rows_of_step(trainer.data, batch, 0))
        for block in range(1, steps + 1, 10):
            for name, trainer in trainers.items():
                started = time.perf_counter()
                for step in range(block, min(block + 10, steps + 1)):
                    trainer.take_step(rows_of_step(trainer.data, batch, step))
                seconds[name] += time.perf_counter() - started
        for name in trainers:
            result[f"{name}_images_per_s"] = steps * batch / seconds[name]
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
    parser.add_argument("--steps", type=int, default=300, help="training steps timed per source")
    parser.add_argument("--workdir", type=Path, default=None, help="where the folders go (default: a temporary one)")
    parser.add_argument("--worker", choices=("cache", "memory", "both"), help=argparse.SUPPRESS)
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
        row = rows[count] = {"first": measure(folder, args.image_size, "cache", 0, cache_folder),
                             "second": measure(folder, args.image_size, "cache", 0, cache_folder)}
        row["cache_mb"] = sum(p.stat().st_size for p in cache_folder.glob("*.pixels")) / 1e6
        for name in ("first", "second"):
            result = row[name]
            print(f"  {name} start  data.load {result['load_s']:7.2f} s, whole process {result['process_s']:6.1f} s, "
                  f"peak anon {result['peak_anon_mb']:5.0f} MB  ({result['load']})", flush=True)
        for source in ("cache", "memory"):
            result = row[source] = measure(folder, args.image_size, source, args.steps, cache_folder)
            print(f"  start and {args.steps} steps from the {source:6s}: start {result['load_s']:6.2f} s, "
                  f"peak anon {result['peak_anon_mb']:5.0f} MB, peak file-backed {result['peak_file_mb']:5.0f} MB  "
                  f"({result['load']})", flush=True)
        result = row["both"] = measure(folder, args.image_size, "both", args.steps, cache_folder)
        print(f"  taking turns, {args.steps} steps each: from the cache {result['cache_images_per_s']:5.0f} img/s, "
              f"in memory {result['memory_images_per_s']:5.0f} img/s  ({result['load']})", flush=True)
        shutil.rmtree(cache_folder, ignore_errors=True)

    print(f"\nratios ({load_average()} at the end; the machine is shared: every figure moves with the load)")
    for count, row in rows.items():
        both = row["both"]
        print(f"  {count:>7,} images: second start / first start {row['second']['load_s'] / row['first']['load_s']:.3f} "
              f"(need <= 0.10; whole processes with Python and torch start-up "
              f"{row['second']['process_s'] / row['first']['process_s']:.2f}), "
              f"training img/s cache / memory {both['cache_images_per_s'] / both['memory_images_per_s']:.3f} "
              f"(need >= 0.90), cache file {row['cache_mb']:.0f} MB")
    if len(rows) > 1:
        small, large = rows[min(rows)], rows[max(rows)]
        for source in ("cache", "memory"):
            growth = large[source]["peak_anon_mb"] / small[source]["peak_anon_mb"] - 1
            print(f"  peak memory training from the {source}, {min(rows):,} -> {max(rows):,} images: "
                  f"{small[source]['peak_anon_mb']:.0f} -> {large[source]['peak_anon_mb']:.0f} MB, "
                  f"{100 * growth:+.1f}%" + (" (need < +10%)" if source == "cache" else " (before the cache)"))
        growth = large["first"]["peak_anon_mb"] / small["first"]["peak_anon_mb"] - 1
        print(f"  peak memory of the first start, building the cache: {small['first']['peak_anon_mb']:.0f} -> "
              f"{large['first']['peak_anon_mb']:.0f} MB, {100 * growth:+.1f}%")


if __name__ == "__main__":
    main()
