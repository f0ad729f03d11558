"""How fast the `vae` command answers when it needs no model: help, version, listings and usage
errors. Run by hand (not a test):

    .venv/bin/python benchmarks/cli_startup.py [--runs 7]

Each case is a whole new process (interpreter start, imports, output), timed from spawn to
exit; the cases take turns for --runs rounds so that a slow spell of the machine hits them all,
and the table shows the median. The reference, measured in the same rounds, is
`python -c "import torch"`: what every command paid before the CLI imported torch lazily.
The goal is under 0.5 s for every case.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.5

CASES = {
    'python -c "import torch" (reference)': [sys.executable, "-c", "import torch"],
    "vae --help": ["--help"],
    "vae -h": ["-h"],
    "vae --version": ["--version"],
    "vae train --help": ["train", "--help"],
    "vae sample --help": ["sample", "--help"],
    "vae keys": ["keys"],
    "vae configs": ["configs"],
    "vae train --bogus (bad option)": ["train", "--bogus"],
    "vae train --set model.latnt_dim=2 (bad key)": ["train", "--set", "model.latnt_dim=2"],
    "vae train --config nope (unknown config)": ["train", "--config", "nope"],
}


def command(args: list[str]) -> list[str]:
    return args if args[0] == sys.executable else [sys.executable, "-m", "vae_cli", *args]


def seconds(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command(args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds; each case runs once per round")
    rounds = parser.parse_args().runs
    for args in CASES.values():  # warm the file cache and .pyc files; not timed
        seconds(args)
    times = {name: [] for name in CASES}
    for _ in range(rounds):
        for name, args in CASES.items():
            times[name].append(seconds(args))
    reference = statistics.median(next(iter(times.values())))
    print(f"median of {rounds} runs per case, whole process; goal < {GOAL_S} s\n")
    print(f"{'case':46} {'median s':>9} {'/ import torch':>15}")
    for name, values in times.items():
        median = statistics.median(values)
        mark = "" if name.endswith("(reference)") else ("  ok" if median < GOAL_S else "  SLOW")
        print(f"{name:46} {median:9.3f} {median / reference:15.2f}{mark}")


if __name__ == "__main__":
    main()
