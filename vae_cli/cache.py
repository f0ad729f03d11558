"""The decoded-image cache: an image folder is decoded once into a file of uint8 pixels, which
later runs, `vae eval`, `sample`, `plot`, `interpolate test:N` and every torchrun process map
into memory instead of decoding the folder again. Batches are gathered from the map, so the
pixels never have to fit in RAM: the kernel pages them in and drops them as it needs.

One file per folder and preprocessing, <cache folder>/<digest>.pixels, laid out as
    pixels (uint8, N x C x H x W, in the split's order) | labels (int64, N) | header (JSON) |
    header length (8 bytes) | MAGIC
with the pixels first so that they map from offset 0, and the header last so that a file cut
short has no MAGIC at its end. The header holds the key (a digest of every file's name, size
and modification time, and of the settings that change pixels), the shape, and the CRC-32 of
pixels and labels: a stale, truncated or corrupt file is found when it is opened and rebuilt.

A build writes to a temporary name, fsyncs and renames it last, so a build killed halfway
never looks complete. Processes that find the cache missing take a lock (flock on
<digest>.lock): the first builds, the others wait, then map what it wrote. A cache folder that
cannot be written (read-only, full, forbidden) costs a one-line warning: the images are then
decoded into memory, as before the cache existed.
"""

import errno
import hashlib
import json
import os
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .console import warn
from .files import FileFault, explain, make_folder, sync_folder

FORMAT = 1  # bump when the layout or the decoding changes what a cache file holds
MAGIC = b"vae-cli decoded images\n"
SUFFIX = ".pixels"
CHUNK_BYTES = 1 << 24  # read and written 16 MB at a time


def location() -> Path:
    """Where caches live: $VAE_CACHE, else $XDG_CACHE_HOME/vae-cli, else ~/.cache/vae-cli."""
    if os.environ.get("VAE_CACHE"):
        return Path(os.environ["VAE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vae-cli"


@dataclass
class Stored:
    images: torch.Tensor  # uint8 (N, C, H, W), mapped from the cache file or in memory
    labels: torch.Tensor  # int64 (N,)
    meta: dict  # what the builder recorded beside the images (the split, the class names)


class CacheWriteFailed(FileFault):
    """The cache folder refused a write: the caller decodes into memory instead."""


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def file_listing(root: Path, files: list[str]) -> str:
    """A digest of each file's path relative to `root`, size and modification time: it changes
    when a file is added, removed, renamed or rewritten."""
    digest = hashlib.sha256()
    for name in files:  # streamed into the hash: no list as long as the folder
        status = os.stat(os.path.join(root, name))
        digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_or_build(root: Path, files: list[str], settings: dict, shape: tuple[int, ...],
                  build: Callable[["FileBuilder | MemoryBuilder"], Stored]) -> Stored:
    """The images of folder `root` preprocessed with `settings`, from the cache when it holds
    them for exactly these files, else from `build`, which adds the decoded images (of `shape`)
    to the builder it is given and returns builder.finish(...)."""
    key = {"listing": file_listing(root, files), "settings": settings}
    root = Path(root).resolve()
    path = location() / f"{_digest([str(root), settings, FORMAT])[:24]}{SUFFIX}"
    stored, _ = _open(path, key)
    if stored is not None:
        return stored
    try:
        with _lock(path):
            stored, problem = _open(path, key)  # another process may have built it while we waited
            if stored is not None:
                return stored
            if problem != "missing":
                warn(f"the decoded-image cache {path} of {root} is {problem}: decoding the folder again")
            with FileBuilder(path, key, root, settings, capacity=len(files), shape=shape) as builder:
                build(builder)
    except CacheWriteFailed as failure:
        warn(f"{failure}; decoding into memory this time (set VAE_CACHE to a writable folder to keep the "
             f"decoded images)")
        return build(MemoryBuilder())
    stored, problem = _open(path, key)
    if stored is None:  # the file just written does not read back: the disk is lying
        raise CacheWriteFailed(f"the decoded-image cache {path} is {problem} right after it was written: "
                               f"check the disk, or set VAE_CACHE to a folder on another one")
    return stored


def _read_header(handle) -> tuple[dict | None, str]:
    """The header of an open cache file, or None and why it cannot be read."""
    size = os.fstat(handle.fileno()).st_size
    tail = len(MAGIC) + 8
    if size < tail:
        return None, "truncated"
    handle.seek(size - tail)
    length_bytes, magic = handle.read(8), handle.read(len(MAGIC))
    if magic != MAGIC:
        return None, "truncated or not a cache file"
    length = int.from_bytes(length_bytes, "little")
    if length > size - tail:
        return None, "corrupt (its header length)"
    handle.seek(size - tail - length)
    try:
        header = json.loads(handle.read(length))
        count, shape = header["count"], header["shape"]
        expected = count * (shape[0] * shape[1] * shape[2] + 8) + length + tail
    except (ValueError, KeyError, TypeError, IndexError):
        return None, "corrupt (its header)"
    if expected != size:
        return None, "truncated" if size < expected else "corrupt (longer than its header says)"
    return header, ""


def _checksum(handle, length: int) -> int:
    handle.seek(0)
    crc = 0
    while length > 0:
        chunk = handle.read(min(CHUNK_BYTES, length))
        if not chunk:
            break
        crc, length = zlib.crc32(chunk, crc), length - len(chunk)
    return crc


def _open(path: Path, key: dict) -> tuple[Stored | None, str]:
    """The cache file at `path` mapped, if it is whole and holds `key`; else None and why not
    ("missing", "stale (...)", "truncated", "corrupt ...")."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None, "missing"
    except OSError as error:
        return None, f"unreadable ({explain(error, path, 'read')})"
    with handle:
        header, problem = _read_header(handle)
        if header is None:
            return None, problem
        if header.get("format") != FORMAT or header.get("key", {}).get("settings") != key["settings"]:
            return None, "stale (made by another version or with other settings)"
        if header["key"]["listing"] != key["listing"]:
            return None, "stale (files were added, removed or changed since it was made)"
        count, shape = header["count"], tuple(header["shape"])
        pixel_bytes = count * shape[0] * shape[1] * shape[2]
        if _checksum(handle, pixel_bytes + 8 * count) != header["crc32"]:
            return None, "corrupt (its checksum does not match)"
        handle.seek(pixel_bytes)
        labels = torch.frombuffer(bytearray(handle.read(8 * count)), dtype=torch.int64)
    # MAP_PRIVATE (shared=False): nothing done to the tensor can reach the file.
    pixels = torch.from_file(str(path), shared=False, size=pixel_bytes, dtype=torch.uint8) if pixel_bytes else \
        torch.empty(0, dtype=torch.uint8)
    return Stored(pixels.view(count, *shape), labels, header["meta"]), ""


@contextmanager
def _lock(path: Path):
    """An exclusive lock on `path`'s build, released when the holder exits or dies."""
    lock_path = path.with_suffix(".lock")
    try:
        make_folder(path.parent)
        handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileFault as fault:
        raise CacheWriteFailed(str(fault), fault.error) from None
    except OSError as error:
        raise CacheWriteFailed(explain(error, lock_path), error) from None
    try:
        try:
            import fcntl
        except ImportError:  # Windows: builders may race, and each one's rename is still atomic
            fcntl = None
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the flock


class MemoryBuilder:
    """Collects decoded images in memory: the path when the cache folder cannot be written."""

    def __init__(self):
        self.images, self.labels = [], []

    def add(self, image: torch.Tensor, label: int) -> None:
        self.images.append(image)
        self.labels.append(label)

    def finish(self, order: torch.Tensor, meta: dict) -> Stored:
        images = torch.stack(self.images)[order] if self.images else torch.empty(0, dtype=torch.uint8)
        return Stored(images, torch.tensor(self.labels, dtype=torch.int64)[order], meta)


class FileBuilder:
    """Writes a cache file. Images are added in the order they are decoded, into a scratch
    file; finish() writes them in their final order to a temporary beside the cache file,
    appends labels and header, fsyncs and renames it over the cache file.

    Both files get their whole size reserved up front (posix_fallocate), so a full disk is
    found before the decoding starts, and writes go through os.write, whose failures are
    errors (a store into a mapped file on a full disk would kill the process)."""

    def __init__(self, path: Path, key: dict, root: Path, settings: dict, capacity: int, shape: tuple[int, ...]):
        self.path, self.key, self.root, self.settings, self.shape = path, key, root, settings, tuple(shape)
        self.image_bytes = shape[0] * shape[1] * shape[2]
        self.labels = []
        self.scratch = path.with_name(f".{path.name}.{os.getpid()}.scratch")
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.scratch_handle = self.handle = None
        try:
            self._remove_leftovers()
            self.scratch_handle = self._create(self.scratch, capacity * self.image_bytes)
            self.handle = self._create(self.temporary, capacity * (self.image_bytes + 8))
        except BaseException:
            self.__exit__()
            raise

    def _remove_leftovers(self) -> None:
        """Files of builds killed halfway: whoever holds the lock is the only builder."""
        for leftover in self.path.parent.glob(f".{self.path.name}.*"):
            try:
                leftover.unlink(missing_ok=True)
            except OSError as error:
                raise CacheWriteFailed(explain(error, leftover, "remove"), error) from None

    def _create(self, path: Path, size: int) -> int:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            raise CacheWriteFailed(explain(error, path.parent), error) from None
        try:
            if size and hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle, 0, size)
        except OSError as error:
            os.close(handle)
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot reserve
                return os.open(path, os.O_RDWR)
            raise CacheWriteFailed(explain(error, path.parent), error) from None
        return handle

    def _write(self, handle: int, data) -> None:
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[os.write(handle, view):]
        except OSError as error:
            raise CacheWriteFailed(explain(error, self.path.parent), error) from None

    def add(self, image: torch.Tensor, label: int) -> None:
        self._write(self.scratch_handle, image.contiguous().numpy())
        self.labels.append(label)

    def finish(self, order: torch.Tensor, meta: dict) -> None:
        count = len(self.labels)
        crc = 0
        scratch = (torch.from_file(str(self.scratch), shared=False, size=count * self.image_bytes, dtype=torch.uint8)
                   .view(count, *self.shape)) if count else None
        rows_per_chunk = max(1, CHUNK_BYTES // self.image_bytes)
        for start in range(0, count, rows_per_chunk):
            chunk = scratch[order[start:start + rows_per_chunk]].numpy()
            crc = zlib.crc32(chunk, crc)
            self._write(self.handle, chunk)
        labels = torch.tensor(self.labels, dtype=torch.int64)[order].numpy()
        crc = zlib.crc32(labels, crc)
        self._write(self.handle, labels)
        header = json.dumps({"format": FORMAT, "key": self.key, "folder": str(self.root), "count": count,
                             "shape": self.shape, "crc32": crc, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "meta": meta}).encode()
        self._write(self.handle, header + len(header).to_bytes(8, "little") + MAGIC)
        try:
            written = os.lseek(self.handle, 0, os.SEEK_CUR)
            os.ftruncate(self.handle, written)  # drop what was reserved for unreadable files
            os.fsync(self.handle)
            os.replace(self.temporary, self.path)  # last: only a whole file carries the name
        except OSError as error:
            raise CacheWriteFailed(explain(error, self.path), error) from None
        sync_folder(self.path.parent)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in (self.scratch_handle, self.handle):
            if handle is not None:
                os.close(handle)
        for path in (self.scratch, self.temporary):
            try:
                path.unlink(missing_ok=True)  # the temporary is gone already after a rename
            except OSError:
                pass  # the folder refuses even this; the next build removes them (_remove_leftovers)


def entries() -> list[dict]:
    """Every cache file in location(): its path, bytes, folder, images, shape, settings, when it
    was built, or the problem that keeps it from being used; and unfinished builds' files."""
    folder = location()
    found = []
    for path in sorted(folder.glob(f"*{SUFFIX}")) + sorted(folder.glob(f".*{SUFFIX}.*")):
        entry = {"path": path, "bytes": path.stat().st_size}
        if path.name.startswith("."):
            entry["problem"] = "unfinished build"
        else:
            with open(path, "rb") as handle:
                header, problem = _read_header(handle)
            if header is None:
                entry["problem"] = problem
            else:
                entry.update(folder=header["folder"], count=header["count"], shape=header["shape"],
                             settings=header["key"]["settings"], built=header.get("built"))
        found.append(entry)
    return found


def clear() -> tuple[int, int]:
    """Remove every cache file (and lock) in location(); returns (files removed, bytes freed).
    A process that has a cache file mapped keeps reading it until it exits."""
    removed, freed = 0, 0
    for entry in entries():
        try:
            entry["path"].unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise FileFault(explain(error, entry["path"], "remove")) from None
        removed, freed = removed + 1, freed + entry["bytes"]
    for lock in location().glob("*.lock"):
        lock.unlink(missing_ok=True)
    return removed, freed
