"""How the extract stage shares the cores: decode processes, decoder threads, inference threads.

Sized together from the cores this process may use and the device; the measurements behind each
rule are in benchmarks/RESULTS.md ("## decode", "## extract", "## Figures once quoted in code comments"):

- One FFmpeg thread per decoder: frame threads cost more CPU for the same video, so decoding
  throughput comes from processes, one thread each.
- On a GPU the decoders are the bottleneck (one GPU needs on the order of a hundred decoding
  cores): one decoder per core; the sink needs one torch thread.
- On a CPU device the backbone costs far more than the decoding. The backbone gets every core as
  torch threads and a quarter of the cores decode (at least one decoder): enough to stay ahead of it
  at 720p, few enough that decoders seldom take a core from a torch thread (the other threads would
  wait for it at the next barrier).
- glibc gives blocks above 32 MB back to the kernel when freed, and a CPU forward pass allocates
  many such blocks, so each pass faulted them in anew. `keep_freed_memory` makes the inference
  process keep and reuse its freed memory instead.

Every number is a config key (`workers`, `decoder_threads`, `torch_threads`, `decoder_nice`); the
plan only fills in those left unset. Decoders run at normal priority unless `decoder_nice` says
otherwise: a lower one was not measurably better on the 2-core VM, and on a shared machine it
leaves them to starve behind other users' jobs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass

from videolt.extract.config import ExtractConfig

__all__ = ["CorePlan", "available_cores", "keep_freed_memory", "one_malloc_arena", "plan_cores", "sized"]

log = logging.getLogger(__name__)

# Decode processes per core beside a CPU backbone (see above; at least one).
CPU_DECODERS_PER_CORE = 0.25

# glibc mallopt parameters (malloc.h) and their defaults.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536


@dataclass(frozen=True)
class CorePlan:
    """Who gets the cores in one extract run."""

    cores: int  # cores this process may run on
    workers: int  # decode processes (0: decode in the sink's process)
    decoder_threads: int  # FFmpeg threads per decoder (0: FFmpeg's choice)
    torch_threads: int  # intra-op threads of the backbone process
    decoder_nice: int  # nice increment of the decode processes (0: normal priority)

    def describe(self) -> str:
        nice = f" at nice +{self.decoder_nice}" if self.decoder_nice else ""
        threads = "FFmpeg's thread choice" if self.decoder_threads == 0 else f"{self.decoder_threads} thread(s)"
        return (f"{self.cores} cores: {self.workers} decode process(es) of {threads}{nice}, "
                f"{self.torch_threads} inference thread(s)")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def plan_cores(device_type: str, *, cores: int | None = None, workers: int | None = None,
               decoder_threads: int | None = None, torch_threads: int | None = None,
               decoder_nice: int | None = None, sinks: int = 1) -> CorePlan:
    """The plan for `sinks` backbone sinks on `device_type` ("cpu", "cuda", ...); given values are kept
    as they are. CPU sinks share the cores as torch threads (each gets its share: `torch_threads` is
    per sink); beside GPU sinks every core decodes."""
    cores = cores or available_cores()
    on_cpu = device_type == "cpu"
    if workers is None:
        workers = max(round(cores * CPU_DECODERS_PER_CORE), 1) if on_cpu else cores
    if decoder_threads is None:
        # One thread per decoder: decoders are processes; on a GPU machine with fewer decoders than
        # cores they share the rest; decoding in the sink's process (workers 0) alternates with
        # inference, so it takes FFmpeg's own choice.
        decoder_threads = 0 if workers == 0 else 1 if on_cpu or workers >= cores else max(cores // workers, 1)
    if torch_threads is None:
        torch_threads = max(cores // max(sinks, 1), 1) if on_cpu else 1
    return CorePlan(cores, workers, decoder_threads, torch_threads, decoder_nice or 0)


def sized(cfg: ExtractConfig, device_type: str, *, cores: int | None = None, sinks: int = 1) -> ExtractConfig:
    """`cfg` with its unset core keys filled in by `plan_cores` (Ray: `workers` stays the cluster's)."""
    plan = plan_cores(device_type, cores=cores, workers=cfg.workers, decoder_threads=cfg.decoder_threads,
                      torch_threads=cfg.torch_threads, decoder_nice=cfg.decoder_nice, sinks=sinks)
    workers = cfg.workers if cfg.executor == "ray" else plan.workers
    decoder_threads = plan.decoder_threads if cfg.executor != "ray" or cfg.decoder_threads is not None else 1
    return dataclasses.replace(cfg, workers=workers, decoder_threads=decoder_threads,
                               torch_threads=plan.torch_threads, decoder_nice=plan.decoder_nice)


def one_malloc_arena() -> bool:
    """Make every thread of this process allocate from glibc's main arena; True if applied.

    Call it before the process starts a thread (glibc gives a thread that allocates its own arena
    once there is contention). A sink runs its forward pass on a thread, and a thread's arena maps
    and trims its heaps whatever `keep_freed_memory` says, so the pass would fault its pages in anew:
    half the frames/s on the CPU (benchmarks/RESULTS.md, "The whole stage against its parts").
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_ARENA_MAX, 1))


def keep_freed_memory(keep: bool = True) -> bool:
    """Make this process keep the memory it frees (glibc: no mmap blocks, no trimming); True if applied.

    For a process that runs the same large allocations again and again (a CPU forward pass): their
    pages stay mapped and are reused, instead of being unmapped on free and faulted in, zeroed, on
    the next pass; the process's footprint stays at its peak. `keep=False` restores glibc's
    defaults and gives the free memory back (the extract stage does so when it ends).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mmap_max, trim = (0, 2**31 - 1) if keep else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    applied = bool(mallopt(_M_MMAP_MAX, mmap_max)) and bool(mallopt(_M_TRIM_THRESHOLD, trim))
    if not keep:
        malloc_trim(0)
    if not applied:
        log.debug("mallopt refused; freed memory goes back to the kernel")
    return applied
