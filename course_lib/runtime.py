"""One call at the top of every notebook: seeds, device, threads, and the one knob that makes runs bigger.

    from course_lib.runtime import setup
    rt = setup(seed=0)          # prints e.g. "course_lib 0.1.0 | torch 2.13.0+cpu | cpu, 2 threads | seed 0 | scale 1"
    steps = rt.scaled(200)      # 200 on the default path, 200 * COURSE_SCALE when you ask for more

The knob is the environment variable ``COURSE_SCALE`` (or ``setup(scale=...)``): a multiplier on training steps and
data sizes. The default, 1, is the path the tests run: a couple of minutes on a 2-core laptop CPU. On a GPU try 10.
``COURSE_DEVICE`` forces a device (``cpu``, ``cuda``, ``mps``). The CPU threads are chosen from the machine's state:
one per core that other programs leave idle, because two threads sharing one busy core are much slower than one
(notebook 01 on a loaded 2-core machine: 786 s with 2 threads, 240 s with 1). "Idle" is measured now, over half a
second of the CPU counters (Linux, Colab), not read from the 1-minute load average: that average still holds a
notebook that ended a minute ago (notebook 02 run right after 00 on an idle 2-core machine got one thread from it and
took 132 s; measured now, it gets two and takes 88 s). Where the counters are absent (macOS), the load average stands
in for them.
``COURSE_THREADS`` or ``setup(threads=...)`` overrides the choice; the setup line says which it was.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import course_lib


@dataclass(frozen=True)
class Runtime:
    """What ``setup`` found and chose."""

    device: torch.device
    seed: int
    scale: float
    threads: int
    in_colab: bool
    threads_reason: str = "set by the caller"

    def scaled(self, n: int, minimum: int = 1) -> int:
        """``n`` multiplied by the run-size knob (at least ``minimum``)."""
        return max(minimum, round(n * self.scale))

    def describe(self) -> str:
        where = "Colab" if self.in_colab else platform.system()
        threads = f", {self.threads} thread{'s' * (self.threads != 1)} ({self.threads_reason})" \
            if self.device.type == "cpu" else ""
        name = f" ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda" else ""
        return (f"course_lib {course_lib.__version__} | torch {torch.__version__} | {self.device}{name}{threads} | "
                f"seed {self.seed} | scale {self.scale:g} (COURSE_SCALE) | {where}, Python {platform.python_version()}")


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` or ``$COURSE_DEVICE`` if given, else CUDA, then Apple's MPS, then the CPU."""
    name = preferred or os.environ.get("COURSE_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def busy_elsewhere(window: float = 0.5) -> float | None:
    """How many cores other processes keep busy now: the machine's busy CPU time over ``window`` seconds
    (``/proc/stat``) minus this process's own, divided by the window. None where ``/proc/stat`` is absent."""
    def busy_seconds() -> float:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    try:
        before, own_before, wall_before = busy_seconds(), time.process_time(), time.perf_counter()
        time.sleep(window)
        after, own_after, wall_after = busy_seconds(), time.process_time(), time.perf_counter()
    except (OSError, ValueError, AttributeError):
        return None
    return max(0.0, (after - before - (own_after - own_before)) / (wall_after - wall_before))


def choose_threads(cores: int | None = None, load: float | None = None, busy: float | None = None
                   ) -> tuple[int, str]:
    """CPU threads for this machine now, and why: one per core that other programs leave idle (1 to 8).

    ``busy`` (cores kept busy by others now) defaults to ``busy_elsewhere()``; where that is unavailable, ``load``
    (default ``os.getloadavg()[0]``, absent on Windows: all cores) stands in for it. ``cores`` defaults to
    ``os.cpu_count()``.
    """
    cores = cores or os.cpu_count() or 1
    if busy is None and load is None:
        busy = busy_elsewhere()
    if busy is not None:
        idle = max(1, min(8, cores - round(busy)))
        return idle, f"{busy:.1f} of {cores} cores busy elsewhere; COURSE_THREADS=N overrides"
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return max(1, min(cores, 8)), f"{cores} cores; set COURSE_THREADS to change"
    idle = max(1, min(8, cores - round(load)))
    return idle, f"load {load:.1f} on {cores} cores; COURSE_THREADS=N overrides"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS


def free_memory() -> None:
    """Collect garbage and hand freed memory back to the operating system (glibc keeps it otherwise).

    Notebooks that train several models one after another call this between runs, so that the process's memory
    stays near one model's worth instead of growing with every run; a no-op where glibc's ``malloc_trim`` is absent.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _show_figures_inline() -> None:
    """In a Jupyter kernel, switch matplotlib to inline now, so figures that course_lib builds without pyplot
    display from the first cell on (the inline backend otherwise only starts with the first pyplot call)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        shell.run_line_magic("matplotlib", "inline")


def setup(seed: int = 0, scale: float | None = None, device: str | None = None, threads: int | None = None,
          verbose: bool = True) -> Runtime:
    """Seed everything, pick the device and CPU threads, read the run-size knob, and print one line about it."""
    if scale is None:
        raw = os.environ.get("COURSE_SCALE", "1")
        try:
            scale = float(raw)
        except ValueError:
            raise ValueError(f"COURSE_SCALE must be a number such as 1 or 10, got {raw!r}") from None
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    seed_everything(seed)
    chosen = pick_device(device)
    if threads:
        n_threads, reason = threads, "set by setup(threads=...)"
    elif int(os.environ.get("COURSE_THREADS", "0") or 0) > 0:
        n_threads, reason = int(os.environ["COURSE_THREADS"]), "COURSE_THREADS"
    else:
        n_threads, reason = choose_threads()
    torch.set_num_threads(n_threads)
    runtime = Runtime(device=chosen, seed=seed, scale=float(scale), threads=n_threads,
                      in_colab="google.colab" in sys.modules, threads_reason=reason)
    _show_figures_inline()
    if verbose:
        print(runtime.describe())
    return runtime
