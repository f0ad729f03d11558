"""Every file the tool writes goes through here, and every failure of the operating system
becomes one line that names the path and what to do.

A file is written whole to a temporary name beside its target and then renamed over it, so
a crash, a kill -9 or a full disk leaves the previous file or the new one, never half of one;
a write that fails removes its temporary. The writes use os.open/os.write/os.replace
directly: one narrow door to the file system, which the fault tests can also hold shut.
"""

import errno
import os
from pathlib import Path

from .errors import VaeError

# errno -> (what went wrong, what to do about it)
PROBLEMS = {
    errno.EROFS: ("the file system is read-only",
                  "write somewhere writable (set VAE_RUNS for runs, --out for pictures)"),
    errno.EACCES: ("permission denied",
                   "write somewhere you may write (set VAE_RUNS for runs, --out for pictures), or fix the permissions"),
    errno.ENOSPC: ("no space left on the device",
                   "free some space and run it again; files written before are intact "
                   "(an interrupted training continues with vae train --resume RUN)"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "use a shorter name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EISDIR: ("it is a folder where a file is expected", "name a file, not a folder"),
    errno.EEXIST: ("it is a file where a folder is expected", "name a folder, or move the file away"),
}
PROBLEMS[errno.EPERM] = PROBLEMS[errno.EACCES]
PROBLEMS[errno.EDQUOT] = ("the disk quota is exceeded", PROBLEMS[errno.ENOSPC][1])


class FileFault(VaeError):
    """The operating system refused a read or write; the message says where and what to do."""

    def __init__(self, message: str, error: OSError | None = None):
        super().__init__(message)
        self.error = error


def explain(error: OSError, path=None, action: str = "write") -> str:
    """One line for an OSError: the path, the problem and the fix."""
    where = path if path is not None else error.filename
    problem, fix = PROBLEMS.get(error.errno, (error.strerror or str(error), "check the path and the disk"))
    return f"cannot {action} {where}: {problem}: {fix}" if where is not None else f"{problem}: {fix}"


def make_folder(folder: Path) -> Path:
    """Create `folder` and its parents if missing; a failure is a FileFault naming it."""
    folder = Path(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file, or a link to nowhere, stands where the folder should be
        code = errno.ENOENT if folder.is_symlink() else errno.EEXIST
        raise FileFault(explain(OSError(code, os.strerror(code)), folder)) from None
    except OSError as error:
        raise FileFault(explain(error, folder)) from None
    return folder


def check_writable(folder: Path) -> Path:
    """Create `folder` if needed and write and remove a small file in it, so a read-only,
    full or forbidden folder is reported before any expensive work, not after it."""
    folder = make_folder(folder)
    try:
        probe = write_bytes(folder / f".vae-write-check-{os.getpid()}", bytes(4096))
    except FileFault as fault:  # name the folder, not the probe
        raise FileFault(explain(fault.error, folder), fault.error) from None
    _remove_quietly(probe)
    return folder


def check_can_write(path: Path) -> Path:
    """check_writable for the folder of `path`, and `path` is not a folder."""
    path = Path(path)
    check_writable(path.parent)
    if path.is_dir():
        raise FileFault(explain(OSError(errno.EISDIR, os.strerror(errno.EISDIR)), path))
    return path


def write_bytes(path: Path, data: bytes, durable: bool = False) -> Path:
    """Replace `path` by `data` atomically. `durable` also fsyncs the file and its folder, so
    even a power cut keeps one complete version (for checkpoints)."""
    path = Path(path)
    make_folder(path.parent)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
            if durable:
                os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, path)
    except OSError as error:
        _remove_quietly(temporary)
        raise FileFault(explain(error, path), error) from None
    if durable:
        sync_folder(path.parent)
    return path


def write_text(path: Path, text: str, durable: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), durable)


def append_line(path: Path, line: str) -> Path:
    """Add one line to a text file by rewriting it atomically: a failure leaves every earlier
    line as it was (an append in place can leave half a line on a full disk)."""
    path = Path(path)
    try:
        before = path.read_bytes()
    except FileNotFoundError:
        before = b""
    return write_bytes(path, before + line.rstrip("\n").encode("utf-8") + b"\n")


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # never created, or the file system refuses even this: the original error matters


def sync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename itself has happened
