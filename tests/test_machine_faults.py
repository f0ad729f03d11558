"""Faults of the machine, through the real CLI: a read-only or full disk, a forbidden folder,
names the file system refuses, kill -9 during a checkpoint write. Each failure is one line on
stderr with exit code 1 (no traceback), and no file written before it changes.

Two ways to break the disk: `FaultyDisk` makes the OS calls that write under one folder fail
with the errno a real disk gives (always runs, also as root, where chmod stops nothing); the
mount tests put runs/ on a real 1 MB or read-only tmpfs inside `unshare -rm` (skipped where the
machine allows no mount namespace)."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_MOONS
from vae_cli import data as data_module
from vae_cli import evaluation, files, runs

TINY = [a for o in TINY_MOONS for a in ("--set", o)]
REPO = Path(__file__).resolve().parents[1]


def assert_one_line_error(result, code, *fragments):
    """Exit code `code`, exactly one line on stderr holding every fragment, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes: what 'no earlier file changed' compares."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class FaultyDisk:
    """Makes the OS calls that write under `folder` fail as a broken disk would: every write
    with `fail_everything(code)` (EROFS, EACCES), or once `budget` bytes are written (ENOSPC)."""

    def __init__(self, monkeypatch, folder: Path):
        self.folder, self.code, self.budget, self.files = str(folder.resolve()), None, None, set()
        real = {name: getattr(os, name) for name in ("open", "write", "mkdir", "replace", "rename", "unlink")}

        def inside(path) -> bool:
            return os.path.abspath(path).startswith(self.folder)

        def refuse(path):
            raise OSError(self.code, os.strerror(self.code), str(path))

        def open_(path, flags, mode=0o777, *args, **kwargs):
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and inside(path) and self.code is not None:
                refuse(path)
            handle = real["open"](path, flags, mode, *args, **kwargs)
            if writing and inside(path):
                self.files.add(handle)
            return handle

        def write(handle, data):
            if handle in self.files and self.budget is not None:
                if len(data) > self.budget:
                    self.budget = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self.budget -= len(data)
            return real["write"](handle, data)

        def path_call(name):
            def call(path, *args, **kwargs):
                if inside(path) and self.code is not None:
                    refuse(path)
                return real[name](path, *args, **kwargs)
            return call

        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "write", write)
        for name in ("mkdir", "replace", "rename", "unlink"):
            monkeypatch.setattr(os, name, path_call(name))

    def fail_everything(self, code: int) -> "FaultyDisk":
        self.code = code
        return self

    def fill_after(self, budget: int) -> "FaultyDisk":
        self.budget = budget
        return self

    def heal(self) -> None:
        self.code = self.budget = None


@pytest.fixture
def trained(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "ok").exit_code == 0
    return runs_dir / "ok"


@pytest.fixture
def no_expensive_work(monkeypatch):
    """Loading data or a model before the output folder is checked fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("expensive work started before the output folder was checked")
    monkeypatch.setattr(data_module, "load", forbidden)
    monkeypatch.setattr(runs, "load_model", forbidden)
    monkeypatch.setattr(evaluation, "evaluate", forbidden)


WRITING_COMMANDS = {
    "train": lambda run: ["train", *TINY, "--name", "new"],
    "resume": lambda run: ["train", "--resume", run, "--set", "train.epochs=2"],
    "sample": lambda run: ["sample", "--run", run],
    "interpolate": lambda run: ["interpolate", "test:0", "test:1", "--run", run, "--gif"],
    "eval": lambda run: ["eval", "--run", run, "--k", "2"],
    "plot": lambda run: ["plot", "--run", run],
    "compare": lambda run: ["compare", run, "--out", run / "compare.png"],
}


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                           (errno.ENOSPC, "no space left")])
@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_an_unwritable_run_folder_fails_in_one_line_before_any_work(
        vae, trained, runs_dir, monkeypatch, no_expensive_work, command, code, problem):
    before = snapshot(runs_dir)
    disk = FaultyDisk(monkeypatch, runs_dir)
    disk.fill_after(0) if code == errno.ENOSPC else disk.fail_everything(code)
    result = vae(*WRITING_COMMANDS[command](trained))
    assert_one_line_error(result, 1, problem, str(runs_dir))
    assert ".vae-write-check" not in result.stderr  # the folder is named, not the probe file
    disk.heal()
    assert snapshot(runs_dir) == before
    assert not list(runs_dir.rglob(".*.tmp"))


@pytest.mark.parametrize("code, problem", [(errno.EROFS, "read-only"), (errno.ENOSPC, "no space left")])
def test_moon_into_an_unwritable_folder(vae, tmp_path, monkeypatch, code, problem):
    disk = FaultyDisk(monkeypatch, tmp_path / "out")
    disk.fill_after(0) if code == errno.ENOSPC else disk.fail_everything(code)
    assert_one_line_error(vae("moon", "1", tmp_path / "out" / "full.png"), 1, problem, str(tmp_path / "out"))
    disk.heal()
    assert not (tmp_path / "out" / "full.png").exists()


def test_a_disk_filling_up_mid_run_keeps_the_checkpoints_and_resume_finishes(vae, trained, runs_dir, monkeypatch):
    before = snapshot(runs_dir)
    # Enough for the write check, config.yaml and epoch 2's pictures, not for its checkpoint.
    disk = FaultyDisk(monkeypatch, runs_dir).fill_after(200_000)
    assert_one_line_error(vae("train", "--resume", trained, "--set", "train.epochs=2"), 1,
                          "no space left", "resume")
    disk.heal()
    for name in ("ok/checkpoints/last.pt", "ok/checkpoints/best.pt", "latest"):
        assert (runs_dir / name).read_bytes() == before[Path(name)]
    # Epoch 2's metrics line may have been written; the earlier ones are as they were.
    assert (trained / "metrics.jsonl").read_bytes().startswith(before[Path("ok/metrics.jsonl")])
    assert not list(runs_dir.rglob(".*.tmp"))
    assert runs.load_checkpoint(trained / "checkpoints" / "last.pt")["epoch"] == 1
    assert vae("train", "--resume", trained, "--set", "train.epochs=2").exit_code == 0
    assert len(runs.read_metrics(trained)) == 2


def test_a_failed_append_keeps_every_earlier_metrics_line(tmp_path, monkeypatch):
    path = files.append_line(tmp_path / "metrics.jsonl", '{"epoch": 1}')
    FaultyDisk(monkeypatch, tmp_path).fill_after(5)
    with pytest.raises(files.FileFault, match="no space left"):
        files.append_line(path, '{"epoch": 2}')
    assert path.read_text() == '{"epoch": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


@pytest.mark.parametrize("target, problem", [
    ("x" * 300 + ".png", "name is too long"),
    ("afolder.png", "folder where a file is expected"),
    ("afile/x.png", "a file where a folder is expected"),
    ("dangling/x.png", "no such file or folder"),
])
def test_paths_the_file_system_refuses(vae, trained, tmp_path, no_expensive_work, target, problem):
    (tmp_path / "afolder.png").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone" / "deeper")
    before = snapshot(tmp_path)
    assert_one_line_error(vae("sample", "--run", trained, "--out", tmp_path / target), 1, problem)
    assert snapshot(tmp_path) == before


def test_every_os_error_reads_as_one_line_with_path_and_fix():
    for code in files.PROBLEMS:
        message = files.explain(OSError(code, os.strerror(code)), Path("runs/x"))
        assert message.startswith("cannot write runs/x: ") and "\n" not in message
        assert message.count(":") >= 2  # path: problem: fix


# --- real file systems, where the machine allows a private mount namespace ---------------

def _can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="no mount namespace here (unshare -rm)")


def run_in_mount(tmp_path, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) in a private mount namespace with a 1 MB tmpfs on $MNT."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MNT": str(mnt), "VAE_RUNS": str(mnt / "runs"),
           "PY": sys.executable}
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs $MNT && {script}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def assert_one_line(stderr: str, *fragments):
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@needs_mount
def test_train_on_a_1mb_file_system(tmp_path):
    done = run_in_mount(tmp_path, f"$PY -m vae_cli train {' '.join(TINY)} --name tiny --set train.epochs=1; "
                                  "echo rc=$?; ls -A $MNT/runs 2>/dev/null")
    stdout, stderr = done.stdout, done.stderr
    assert "rc=1" in stdout, stdout + stderr
    assert_one_line(stderr, "space", "runs")
    assert ".tmp" not in stdout  # no temporary left behind


@needs_mount
@pytest.mark.parametrize("command", ["sample", "eval --k 2", "plot", "interpolate test:0 test:1 --gif",
                                     "train --resume $VAE_RUNS/ok --set train.epochs=2",
                                     "train --set data.train_size=64 --set data.test_size=16"])
def test_commands_on_a_read_only_run_folder(tmp_path, command):
    setup = (f"$PY -m vae_cli train --set data.train_size=64 --set data.test_size=16 --set model.network=mlp --set model.hidden=[8] "
             f"--set train.epochs=1 --name ok >/dev/null && "
             f"find $MNT -type f -exec md5sum {{}} + | sort > before && mount -o remount,ro $MNT && ")
    done = run_in_mount(tmp_path, setup + f"$PY -m vae_cli {command}; echo rc=$?; "
                                          f"find $MNT -type f -exec md5sum {{}} + | sort > after")
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert_one_line(done.stderr, "read-only", "runs")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()


# --- kill -9 -----------------------------------------------------------------------------------

def test_kill_9_of_training_during_a_checkpoint_write_keeps_the_previous_one_and_resume_continues(
        vae, trained, runs_dir):
    """Training runs in a child process whose writes are slowed to 4 KB per 50 ms; it is
    killed while last.pt's temporary is half written. The previous last.pt must still load
    and --resume must finish the run."""
    last = trained / "checkpoints" / "last.pt"
    before = last.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", f"""
import os, time
real_write = os.write
def slow_write(handle, data):
    time.sleep(0.05)
    return real_write(handle, bytes(data[:4096]))
os.write = slow_write
from vae_cli.cli import app
app(["train", "--resume", {str(trained)!r}, "--set", "train.epochs=2"])
"""], env={**os.environ, "PYTHONPATH": str(REPO), "VAE_RUNS": str(runs_dir)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temporary = last.with_name(".last.pt.tmp")
    deadline = time.monotonic() + 120
    while not (temporary.exists() and temporary.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 0 < temporary.stat().st_size < len(before)  # killed mid-write
    assert last.read_bytes() == before
    assert runs.load_checkpoint(last)["epoch"] == 1
    assert vae("train", "--resume", trained, "--set", "train.epochs=2").exit_code == 0
    assert runs.load_checkpoint(last)["epoch"] == 2
    assert not temporary.exists()  # the next write took the stale temporary's place


@needs_mount
def test_mnist_gz_files_on_a_read_only_copy(tmp_path, mnist_root):
    copy = tmp_path / "ro" / "MNIST" / "raw"
    copy.mkdir(parents=True)
    for gz in (Path(mnist_root) / "MNIST" / "raw").glob("*.gz"):
        shutil.copy(gz, copy)
    done = run_in_mount(tmp_path, f"mount --bind {tmp_path / 'ro'} {tmp_path / 'ro'} && "
                                  f"mount -o remount,ro,bind {tmp_path / 'ro'} && VAE_DATA={tmp_path / 'ro'} VAE_RUNS={tmp_path / 'runs'} "
                                  f"$PY -m vae_cli train --set data.name=mnist; echo rc=$?")
    assert "rc=1" in done.stdout, done.stdout + done.stderr
    assert_one_line(done.stderr, "is read-only and the .gz files there need unpacking")
