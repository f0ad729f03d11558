"""How long one epoch of each shipped config takes on this machine; `vae configs` shows it.
Run by hand (not a test):

    VAE_DATA=/path/to/data .venv/bin/python benchmarks/config_epochs.py [NAME ...] [--write]

Each config trains for one epoch in its own process (`vae train --config NAME --set
train.epochs=1`, runs in a temporary folder); the time is the epoch's own `seconds` in
metrics.jsonl (data loading and start-up excluded). --write records it in the config's leading
comment as `# epoch: 1.7 s (<machine>)`. The folder configs need your images and are skipped.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def epoch_seconds(name: str) -> float:
    with tempfile.TemporaryDirectory() as runs:
        subprocess.run([sys.executable, "-m", "vae_cli", "train", "--config", f"{name}.yaml", "--set",
                        "train.epochs=1", "--name", "bench"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       env=os.environ | {"VAE_RUNS": runs, "PYTHONPATH": str(ROOT)})
        return json.loads((Path(runs) / "bench" / "metrics.jsonl").read_text().splitlines()[0])["seconds"]


def needs_user_data(path: Path) -> bool:
    return (yaml.safe_load(path.read_text()).get("data") or {}).get("name") == "folder"


def record(name: str, text: str) -> None:
    path = CONFIGS / f"{name}.yaml"
    lines = [line for line in path.read_text().splitlines() if not re.match(r"^#\s*epoch:", line)]
    comment = 0
    while comment < len(lines) and lines[comment].startswith("#"):
        comment += 1
    lines.insert(comment, f"# epoch: {text}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="configs to time (default: all that need no user data)")
    parser.add_argument("--write", action="store_true", help="record the times in the configs")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in CONFIGS.glob("*.yaml") if not needs_user_data(p))
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU"
    for name in names:
        seconds = epoch_seconds(name)
        print(f"{name:20} {seconds:8.1f} s")
        if args.write:
            record(name, f"{seconds:.1f} s ({machine})")


if __name__ == "__main__":
    main()
