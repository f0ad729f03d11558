"""The tool's own errors: the CLI prints their message as one line and exits with their code."""


class VaeError(Exception):
    """A runtime failure the user can fix (missing file, corrupt image, ...): exit code 1."""

    exit_code = 1


class Stopped(VaeError):
    """A stop the user asked for (Ctrl-C, SIGTERM): not a failure, so no "error:"; exit code 130."""

    exit_code = 130


class UsageError(VaeError):
    """Bad configuration or command-line input: exit code 2, Typer's convention for usage errors."""

    exit_code = 2
