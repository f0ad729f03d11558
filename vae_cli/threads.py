"""How many CPU threads a long loop uses, chosen from its measured step times while it runs.

Why: PyTorch's CPU threads (OpenMP) split every product between them and spin at the end of
each one waiting for the others. On a core shared with another busy process, the spinning
thread takes CPU time from the one still working, and every operation waits for whichever
thread the scheduler preempted: beside one busy process a 2-thread step took 3x its 1-thread
time on our 2-core machine, and 20x with the machine oversubscribed (docs/speed.md).
OMP_WAIT_POLICY=PASSIVE stops the spinning but is read once at start-up and makes a quiet
machine slower, so the lever left at run time is torch.set_num_threads, which takes effect on
the next operation.

ThreadController measures: it tries each candidate count for a window of steps (a probe),
keeps the fastest (the fewer threads unless more are clearly faster), and probes the counts
up to the kept one again when its steps become clearly slower (the machine got busier, which
more threads cannot help), and every count after a while anyway (the machine may have become
quiet, which makes no kept count slower). A count that collapses is dropped from a probe after
a few steps. It knows nothing about training: the loop hands it the seconds of each step
(`timed`), and tests drive `record` with simulated step times.
"""

import os
import time
from contextlib import contextmanager
from typing import Callable

import torch

# PyTorch's own choice before anything here changed it: one thread per physical core, or
# OMP_NUM_THREADS (torchrun sets 1 for each of several processes).
PYTORCH_DEFAULT = torch.get_num_threads()

WINDOW_SECONDS = 0.5    # a window is at least this much step time...
WINDOW_STEPS = 5        # ...and at least this many steps
NEAR_FASTEST = 1.05     # the fewest threads whose step takes at most this times the fastest are kept
SLOWER = 1.3            # a kept count's window this many times its best means the machine changed...
PATIENCE = 2            # ...when that many windows in a row are
GIVE_UP = 2.0           # a probed count whose first steps take this many times the best count's has had its say
RECHECK_SECONDS = 30.0  # step time at one count before probing again anyway; doubles while probes agree...
RECHECK_MAX_SECONDS = 240.0  # ...up to this


def candidates(most: int) -> list[int]:
    """Counts worth measuring up to `most`: 1, 2, 4, ... and `most` itself."""
    counts, n = [], 1
    while n < most:
        counts.append(n)
        n *= 2
    return [*counts, most]


class ThreadController:
    """Picks among `counts` by measured step time; with one count it only sets it."""

    def __init__(self, counts: list[int], set_threads: Callable[[int], None] = torch.set_num_threads):
        self.counts, self.set_threads = sorted(set(counts)), set_threads
        self.chosen = self.counts[-1] if len(self.counts) == 1 else None  # None until the first probe ends
        self.best = None             # the fastest window (seconds per step) at the chosen count since it was chosen
        self.slow_windows = 0
        self.since_probe = 0.0       # step seconds since the last probe ended
        self.recheck = RECHECK_SECONDS
        self.to_probe: list[int] = list(self.counts) if self.chosen is None else []
        self.probed: dict[int, float] = {}
        self.window: list[float] = []
        self.skip_next = False
        self.threads = None          # the count in force now (a probe's while it measures)
        self._use(self.to_probe[0] if self.to_probe else self.chosen)

    @property
    def adaptive(self) -> bool:
        return len(self.counts) > 1

    @property
    def count(self) -> int:
        """The count the last probe chose (during the first probe, the one it measures)."""
        return self.threads if self.chosen is None else self.chosen

    def _use(self, count: int) -> None:
        if count != self.threads:
            self.set_threads(count)
            self.threads = count
            self.window = []
            self.skip_next = True  # the first step at a new count wakes or parks threads

    @contextmanager
    def timed(self):
        """Times the step run inside it and records it."""
        started = time.perf_counter()
        yield
        self.record(time.perf_counter() - started)

    def record(self, seconds: float) -> None:
        """One step took `seconds` at the current count; may change the count for the next."""
        if not self.adaptive:
            return
        if self.skip_next:
            self.skip_next = False
            return
        self.window.append(seconds)
        # Without the slowest step: one hiccup (a garbage collection, a page fault) does not decide.
        trimmed = sum(self.window) - max(self.window)
        collapsed = (self.to_probe and self.probed and len(self.window) >= 3
                     and trimmed / (len(self.window) - 1) > GIVE_UP * min(self.probed.values()))
        if not collapsed and (len(self.window) < WINDOW_STEPS or sum(self.window) < WINDOW_SECONDS):
            return
        per_step = trimmed / (len(self.window) - 1)
        self.since_probe += sum(self.window)
        self.window = []
        if self.to_probe:
            self._probed(per_step)
        else:
            self._held(per_step)

    def _probed(self, per_step: float) -> None:
        self.probed[self.to_probe.pop(0)] = per_step
        if self.to_probe:
            self._use(self.to_probe[0])
            return
        fastest = min(self.probed.values())
        # Fewer threads spin less beside other work, so more are kept only when clearly faster.
        chosen = next(n for n in sorted(self.probed) if self.probed[n] <= NEAR_FASTEST * fastest)
        self.recheck = min(2 * self.recheck, RECHECK_MAX_SECONDS) if chosen == self.chosen else RECHECK_SECONDS
        self.chosen, self.best, self.slow_windows, self.since_probe = chosen, self.probed[chosen], 0, 0.0
        self.probed = {}
        self._use(chosen)

    def _held(self, per_step: float) -> None:
        self.slow_windows = self.slow_windows + 1 if per_step > SLOWER * self.best else 0
        self.best = min(self.best, per_step)
        if self.since_probe >= self.recheck:
            self.probe(self.counts)
        elif self.slow_windows >= PATIENCE:
            self.slow_windows = 0
            fewer = [n for n in self.counts if n <= self.chosen]
            if len(fewer) > 1:
                self.probe(fewer)

    def probe(self, counts: list[int]) -> None:
        """Measure `counts` again, starting at the next step."""
        self.to_probe = list(counts)
        self._use(self.to_probe[0])


def for_setting(setting: int | str, device) -> ThreadController:
    """The controller for config value train.threads (or `vae eval --threads`) on `device`:
    auto measures counts up to PyTorch's default, 0 is that default, a number is that count
    (at most the cores here). Off the CPU the threads only feed the accelerator, whose steps
    the host cannot time without waiting for it: auto is PyTorch's default there."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if setting == "auto" and torch.device(device).type == "cpu":
        return ThreadController(candidates(PYTORCH_DEFAULT))
    if setting in (0, "auto"):
        return ThreadController([PYTORCH_DEFAULT])
    # More threads than cores only wait on each other at every product (resources.py warns).
    return ThreadController([min(setting, cores)])
