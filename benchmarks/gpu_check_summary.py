"""The last step of benchmarks/gpu_check.sh: one summary of everything it measured.

    python benchmarks/gpu_check_summary.py OUT_DIR

Reads OUT_DIR/cuda-tests.xml (pytest's JUnit report), OUT_DIR/figures.jsonl (the numbers the
tests measured) and OUT_DIR/speed.json (the benchmark), adds the machine, writes
OUT_DIR/summary.json and prints the same as text. Exits 1 when a test failed or a part is
missing, so the script's exit status says whether the check passed.
"""

import json
import os
import platform
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

# The targets on one H100 with configs/mnist.yaml: (ratio name, least speed-up).
SPEED_TARGETS = {"vae-cli / baseline": 10.0, "cuda_graph / baseline": 20.0, "cuda_graph / eager": 2.0}
SAME_ELBO_NATS = 0.5


def machine() -> dict:
    found = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
             "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        found |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2 ** 30, 1),
                  "compute_capability": f"{properties.major}.{properties.minor}"}
    return found


def test_outcomes(report: Path) -> list[dict]:
    cases = []
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "").strip().splitlines()[0][:300] if child.get("message") else ""
        cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                      "message": message})
    return cases


def figures(path: Path) -> dict:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        record = json.loads(line)
        found.setdefault(record["test"], {})[record["name"]] = record["value"]
    return found


def target_checks(speed: dict) -> list[str]:
    lines = []
    for label, least in SPEED_TARGETS.items():
        ratio = speed.get("ratios", {}).get(label)
        if ratio is None:
            lines.append(f"  {label}: not measured on this device")
            continue
        met = ratio["speed"] >= least and abs(ratio["test_neg_elbo_difference"]) <= SAME_ELBO_NATS
        lines.append(f"  {label}: {ratio['speed']:.2f}x (target {least:g}x), test -ELBO "
                     f"{ratio['test_neg_elbo_difference']:+.2f} nats (target within {SAME_ELBO_NATS}): "
                     f"{'met' if met else 'NOT met'}")
    return lines


def main():
    out = Path(sys.argv[1])
    summary = {"machine": machine(), "tests": [], "figures": figures(out / "figures.jsonl"), "speed": None,
               "missing": []}
    if (out / "cuda-tests.xml").is_file():
        summary["tests"] = test_outcomes(out / "cuda-tests.xml")
    else:
        summary["missing"].append("cuda-tests.xml (the tests did not finish)")
    if (out / "speed.json").is_file():
        summary["speed"] = json.loads((out / "speed.json").read_text(encoding="utf-8"))
    else:
        summary["missing"].append("speed.json (the benchmark did not finish)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print("machine: " + ", ".join(f"{key} {value}" for key, value in summary["machine"].items()))
    counts = {}
    for case in summary["tests"]:
        counts[case["outcome"]] = counts.get(case["outcome"], 0) + 1
    print("tests: " + (", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none ran"))
    for case in summary["tests"]:
        numbers = ", ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                            for name, value in summary["figures"].get(case["test"], {}).items())
        print(f"  {case['outcome']:7} {case['seconds']:6.1f}s  {case['test']}"
              + (f"  [{numbers}]" if numbers else "") + (f"  {case['message']}" if case["message"] else ""))
    speed = summary["speed"]
    if speed:
        print(f"speed on {speed['device']} ({speed['machine']}), {speed['epochs']} epochs x {speed['rounds']} rounds:")
        for name, row in speed["training"].items():
            print(f"  {name:34} {row['s_per_epoch']:7.3f} s/epoch {row['images_per_s']:10,.0f} img/s "
                  f"{row['steps_per_s']:7,.0f} steps/s {row['peak_mb']:7.0f} MB peak  "
                  f"test -ELBO {row['test_neg_elbo']:.2f}")
        print("targets:")
        print("\n".join(target_checks(speed)))
    for part in summary["missing"]:
        print(f"missing: {part}")
    print(f"wrote {out / 'summary.json'}")
    failed = counts.get("failed", 0) + counts.get("error", 0)
    sys.exit(1 if failed or summary["missing"] else 0)


if __name__ == "__main__":
    main()
