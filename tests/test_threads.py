"""The thread controller's decisions on simulated step times (a machine whose load comes and
goes, noisy steps), and the count it chose landing in metrics.jsonl and eval.json. No test
here times anything real: benchmarks/shared_cpu.py measures the speed."""

import json
import random

import pytest
import torch

from conftest import TINY_MOONS
from vae_cli import runs, threads
from vae_cli.threads import ThreadController

TINY = [a for o in TINY_MOONS for a in ("--set", o)]


class Machine:
    """Seconds per step at each thread count: `quiet` alone, `loaded` beside a busy process
    (the 2-core figures of docs/speed.md), times a random factor `noise` wide, and every
    `spike_every`th step ten times as long (a garbage collection, another process's burst)."""

    quiet = {1: 0.0088, 2: 0.0055}
    loaded = {1: 0.0094, 2: 0.031}

    def __init__(self, noise: float = 0.0, spike_every: int = 0, seed: int = 0):
        self.load, self.noise, self.spike_every = self.quiet, noise, spike_every
        self.random, self.steps = random.Random(seed), 0

    def step_time(self, count: int) -> float:
        self.steps += 1
        seconds = self.load[count] * (1 + self.noise * (2 * self.random.random() - 1))
        return seconds * 10 if self.spike_every and self.steps % self.spike_every == 0 else seconds


class Counts:
    """Stands in for torch.set_num_threads: keeps every count set."""

    def __init__(self):
        self.set = []

    def __call__(self, count: int) -> None:
        self.set.append(count)


def run(controller: ThreadController, machine: Machine, seconds: float) -> list[int]:
    """Steps for `seconds` of simulated step time; the count each step ran at."""
    used, elapsed = [], 0.0
    while elapsed < seconds:
        used.append(controller.threads)
        step = machine.step_time(controller.threads)
        controller.record(step)
        elapsed += step
    return used


def share(used: list[int], count: int) -> float:
    return used.count(count) / len(used)


def test_a_quiet_machine_gets_both_threads_after_one_probe():
    counts, machine = Counts(), Machine()
    controller = ThreadController([1, 2], counts)
    assert controller.threads == 1 and controller.chosen is None  # the first probe starts with one thread
    used = run(controller, machine, 20)
    assert controller.chosen == 2 and controller.count == 2
    assert counts.set == [1, 2]  # one probe: each count once, then 2 kept
    assert share(used, 2) > 0.97


def test_load_that_appears_moves_to_one_thread_and_load_that_goes_moves_back():
    machine = Machine()
    controller = ThreadController([1, 2], Counts())
    run(controller, machine, 10)
    assert controller.chosen == 2
    machine.load = Machine.loaded
    used = run(controller, machine, 5)
    assert controller.chosen == 1
    # Two slow windows of half a second, then a probe of a window each: the rest at one thread.
    assert share(used, 1) > 0.7
    used = run(controller, machine, 60)
    assert controller.chosen == 1 and share(used, 1) > 0.97  # rechecks cost little
    machine.load = Machine.quiet
    # Nothing gets slower at one thread when the load goes: the periodic recheck finds out.
    run(controller, machine, threads.RECHECK_MAX_SECONDS + 5)
    assert controller.chosen == 2


def test_more_load_at_one_thread_probes_nothing_until_the_recheck():
    """Slower steps mean a busier machine, which more threads cannot help: only counts up to
    the kept one are probed again, and below one thread there are none."""
    counts, machine = Counts(), Machine()
    machine.load = Machine.loaded
    controller = ThreadController([1, 2], counts)
    run(controller, machine, 5)
    assert controller.chosen == 1 and counts.set == [1, 2, 1]
    machine.load = {1: 0.03, 2: 0.3}  # the machine oversubscribed
    run(controller, machine, threads.RECHECK_SECONDS - 6)
    assert counts.set == [1, 2, 1]


def test_a_collapsing_count_is_dropped_after_three_steps():
    counts, machine = Counts(), Machine()
    machine.load = {1: 0.03, 2: 1.5}  # a 2-thread step at load 9 took 1.3 s against 64 ms
    controller = ThreadController([1, 2], counts)
    used = run(controller, machine, 60)
    assert controller.chosen == 1
    # The first probe and the recheck after 30 s each run 2 threads for a skipped first step and three more.
    assert used.count(2) <= 2 * 4


def test_rechecks_back_off_while_they_agree():
    counts, machine = Counts(), Machine()
    controller = ThreadController([1, 2], counts)
    run(controller, machine, 30 * 60)
    probes = counts.set.count(1)  # every probe starts at one thread
    # 30 s, 60 s, 120 s, then every 240 s: 1 + 3 + (1800 - 210) / 240 = about 10 probes
    assert 8 <= probes <= 12, probes


def test_noisy_steps_do_not_make_it_flap():
    counts, machine = Counts(), Machine(noise=0.3, spike_every=37, seed=1)
    controller = ThreadController([1, 2], counts)
    used = run(controller, machine, 30 * 60)
    assert controller.chosen == 2
    assert counts.set.count(1) <= 12  # no more probes than the periodic rechecks
    assert share(used, 2) > 0.97


def test_noisy_steps_under_load_stay_at_one_thread():
    machine = Machine(noise=0.3, spike_every=37, seed=2)
    machine.load = Machine.loaded
    controller = ThreadController([1, 2], Counts())
    used = run(controller, machine, 10 * 60)
    assert controller.chosen == 1 and share(used, 1) > 0.97


def test_more_threads_are_kept_only_when_clearly_faster():
    machine = Machine()
    machine.load = {1: 0.0100, 2: 0.0097}  # 3% faster: not worth a second spinning thread
    controller = ThreadController([1, 2], Counts())
    run(controller, machine, 5)
    assert controller.chosen == 1


def test_four_counts_find_the_fastest():
    machine = Machine()
    machine.load = {1: 0.010, 2: 0.006, 4: 0.004, 8: 0.0045}
    controller = ThreadController(threads.candidates(8), Counts())
    run(controller, machine, 10)
    assert controller.chosen == 4


def test_a_fixed_count_is_set_once_and_never_moves():
    counts, machine = Counts(), Machine()
    machine.load = Machine.loaded
    controller = ThreadController([2], counts)
    run(controller, machine, 60)
    assert counts.set == [2] and controller.count == 2


def test_candidates_double_up_to_the_most():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [1, 2]
    assert threads.candidates(6) == [1, 2, 4, 6]


def test_settings_become_controllers(monkeypatch):
    monkeypatch.setattr(threads, "PYTORCH_DEFAULT", 4)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    assert threads.for_setting("auto", torch.device("cpu")).counts == [1, 2, 4]
    assert threads.for_setting("auto", torch.device("cuda")).counts == [4]  # a GPU's steps are not timed
    assert threads.for_setting(0, torch.device("cpu")).counts == [4]
    assert threads.for_setting(3, torch.device("cpu")).counts == [3]
    assert threads.for_setting(64, torch.device("cpu")).counts == [4]  # at most the cores


def test_the_chosen_count_lands_in_metrics(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=2", "--name", "auto").exit_code == 0
    assert all(line["threads"] in threads.candidates(threads.PYTORCH_DEFAULT)
               for line in runs.read_metrics(runs_dir / "auto"))
    assert vae("train", *TINY, "--set", "train.epochs=2", "--set", "train.threads=1", "--name", "one").exit_code == 0
    assert [line["threads"] for line in runs.read_metrics(runs_dir / "one")] == [1, 1]
    assert torch.get_num_threads() == 1


def test_eval_reports_its_threads_and_refuses_a_bad_count(vae, runs_dir):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--name", "e").exit_code == 0
    result = vae("eval", "--k", 5, "--threads", 1)
    assert result.exit_code == 0, result.output
    assert json.loads((runs_dir / "e" / "eval.json").read_text())["threads"] == 1
    result = vae("eval", "--k", 5, "--threads", "many")
    assert result.exit_code == 2
    assert "--threads must be auto or an integer from 0 to 1024, got 'many'" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["auto", 0, 2])
def test_threads_setting_is_read_and_resumes_changed(vae, runs_dir, value):
    assert vae("train", *TINY, "--set", "train.epochs=1", "--set", f"train.threads={value}", "--name", "r").exit_code == 0
    assert runs.config_of(torch.load(runs_dir / "r/checkpoints/last.pt", weights_only=True),
                          runs_dir / "r").train.threads == value
    result = vae("train", "--resume", runs_dir / "r", "--set", "train.epochs=2", "--set", "train.threads=1")
    assert result.exit_code == 0, result.output
    assert runs.read_metrics(runs_dir / "r")[-1]["threads"] == 1
