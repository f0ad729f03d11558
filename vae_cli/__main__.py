"""`python -m vae_cli` and the `vae` command. Ctrl-C while the tool is still importing ends
like Ctrl-C later: one line and exit code 130, not a traceback."""

import sys


def main() -> None:
    try:
        from .cli import app
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    app(prog_name="vae")


if __name__ == "__main__":
    main()
