"""The CLI answers help, version, listings and usage errors without importing torch (which
takes seconds); benchmarks/cli_startup.py measures the time itself."""

import os
import subprocess
import sys

import pytest

from vae_cli import __version__

# Runs the CLI in a fresh interpreter, then reports whether torch was imported along the way.
PROBE = """
import sys
from vae_cli.cli import app
try:
    app(sys.argv[1:], prog_name="vae")
except SystemExit as end:
    code = end.code
print("torch imported:", "torch" in sys.modules, "exit:", code, file=sys.stderr)
"""


def probe(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, bool, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                            env=None if env is None else os.environ | env)
    verdict = result.stderr.strip().splitlines()[-1]
    return result, verdict.startswith("torch imported: True"), verdict.split("exit: ")[1]


def test_importing_the_cli_does_not_import_torch():
    result = subprocess.run([sys.executable, "-c", "import sys, vae_cli.cli; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("args, exit_code", [
    (["--help"], "0"), (["-h"], "0"), (["train", "--help"], "0"), (["sample", "-h"], "0"),
    (["keys"], "0"), (["configs"], "0"), (["runs", "--help"], "0"),
    (["train", "--bogus"], "2"),
    (["train", "--set", "model.latnt_dim=2"], "2"),
    (["train", "--config", "does-not-exist.yaml"], "2"),
    (["interpolate", "a.png", "b.png", "--method", "cubic"], "2"),
    (["eval", "--split", "validation"], "2"),
])
def test_help_listings_and_usage_errors_answer_without_torch(args, exit_code):
    result, torch_imported, code = probe(*args)
    assert code == exit_code, result.stderr
    assert not torch_imported, f"vae {' '.join(args)} imported torch"


def test_a_command_that_needs_a_model_does_import_torch(tmp_path):
    """The probe can fail: a command that draws a picture does load torch."""
    result, torch_imported, _ = probe("moon", "0.5", str(tmp_path / "half.png"))
    assert torch_imported and (tmp_path / "half.png").is_file(), result.stderr


def test_version():
    result, torch_imported, code = probe("--version")
    assert (code, torch_imported) == ("0", False)
    assert result.stdout.strip() == f"vae-cli {__version__}"


def test_shell_completion_completes_command_names_without_torch():
    """What bash runs on TAB once `vae --install-completion` has set it up."""
    result, torch_imported, code = probe(env={"_VAE_COMPLETE": "complete_bash", "COMP_WORDS": "vae tr",
                                              "COMP_CWORD": "1"})
    assert (result.stdout.split(), code, torch_imported) == (["train"], "0", False)
