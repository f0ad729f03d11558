"""The CLI answers help, version, listings and usage errors without importing torch or
matplotlib (which take seconds); benchmarks/cli_startup.py measures the time itself."""

import os
import subprocess
import sys

import pytest

from vae_cli import __version__

# Runs the CLI in a fresh interpreter, then reports whether torch or matplotlib (charts.py's,
# for curves.png and vae plot) or vae explore's web server was imported along the way.
PROBE = """
import sys
from vae_cli.cli import app
try:
    app(sys.argv[1:], prog_name="vae")
except SystemExit as end:
    code = end.code
slow = [name for name in ("torch", "matplotlib", "starlette", "uvicorn") if name in sys.modules]
print("slow imports:", ",".join(slow) or "none", "exit:", code, file=sys.stderr)
"""


def probe(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, bool, str]:
    """(the process, whether torch or matplotlib was imported, the exit code)."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                            env=None if env is None else os.environ | env)
    verdict = result.stderr.strip().splitlines()[-1]
    return result, not verdict.startswith("slow imports: none"), verdict.split("exit: ")[1]


def test_importing_the_cli_does_not_import_torch():
    result = subprocess.run([sys.executable, "-c", "import sys, vae_cli.cli; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("args, exit_code", [
    (["--help"], "0"), (["-h"], "0"), (["train", "--help"], "0"), (["sample", "-h"], "0"),
    (["keys"], "0"), (["configs"], "0"), (["runs", "--help"], "0"), (["explore", "--help"], "0"),
    (["train", "--bogus"], "2"),
    (["train", "--set", "model.latnt_dim=2"], "2"),
    (["train", "--config", "does-not-exist.yaml"], "2"),
    (["interpolate", "a.png", "b.png", "--method", "cubic"], "2"),
    (["sample", "--sampler", "kde"], "2"),
    (["interpolate", "missing.png", "test:3"], "1"),  # a mistyped path fails before torch loads
    (["eval", "--split", "validation"], "2"),
])
def test_help_listings_and_usage_errors_answer_without_torch(args, exit_code):
    result, slow_imported, code = probe(*args)
    assert code == exit_code, result.stderr
    assert not slow_imported, f"vae {' '.join(args)} imported torch or matplotlib: {result.stderr}"


def test_a_command_that_needs_a_model_does_import_torch(tmp_path):
    """The probe can fail: a command that draws a picture does load torch."""
    result, slow_imported, _ = probe("moon", "0.5", str(tmp_path / "half.png"))
    assert slow_imported and (tmp_path / "half.png").is_file(), result.stderr


def test_version():
    result, slow_imported, code = probe("--version")
    assert (code, slow_imported) == ("0", False)
    assert result.stdout.strip() == f"vae-cli {__version__}"


def test_shell_completion_completes_command_names_without_torch():
    """What bash runs on TAB once `vae --install-completion` has set it up."""
    result, slow_imported, code = probe(env={"_VAE_COMPLETE": "complete_bash", "COMP_WORDS": "vae tr",
                                              "COMP_CWORD": "1"})
    assert (result.stdout.split(), code, slow_imported) == (["train"], "0", False)
