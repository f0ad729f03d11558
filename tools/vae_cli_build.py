"""setuptools' build backend, minus the build/ folder it leaves in the source tree.

pip builds in place, and setuptools stages the wheel's files in build/; left behind, a stale
build/lib can even put deleted files into the next wheel. This backend removes build/ after
each wheel it builds, unless build/ was there before. pyproject.toml names it."""

import shutil
from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F401,F403  (every hook we do not change)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    staging = Path("build")
    existed = staging.exists()
    try:
        return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        if not existed:
            shutil.rmtree(staging, ignore_errors=True)
