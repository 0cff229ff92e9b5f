"""How the extract stage shares the cores: decode processes, decoder threads, inference threads.

Sized together from the cores this process may use and the device, by what was measured on a
2-core VM (benchmarks/RESULTS.md "## extract"):

- One FFmpeg thread per decoder is the cheapest way to decode: frame threads cost about 40 % more
  CPU for the same video (2.2 vs 1.5 CPU-s for 150 s of 360p H.264), so decoding throughput comes
  from processes, one thread each.
- On a GPU the decoders are the bottleneck (one GPU needs on the order of a hundred decoding
  cores): one decoder per core at normal priority; the sink needs one torch thread.
- On a CPU device the backbone costs 10–20× the decoding (ResNet-50 at 224: ~165 ms of CPU a
  frame, against ~10 ms to decode, resize and crop one from 360p). The backbone gets every core
  as torch threads and the decoders run at a lower priority (`nice`): a decoder at the same
  priority takes a core from one torch thread, and the others wait for it at the next barrier.
  Lowered, decoders run in the backbone's gaps and whenever it waits for a video.
- glibc gives blocks above 32 MB back to the kernel when freed, and a CPU forward pass allocates
  many such blocks (a ResNet-50 activation at batch 30 is 96 MB): each pass faulted them in anew,
  and the kernel's page zeroing took ~30 % of the CPU. `keep_freed_memory` makes the inference
  process keep and reuse its freed memory instead.

Every number is a config key (`workers`, `decoder_threads`, `torch_threads`, `decoder_nice`); the
plan only fills in those left unset.
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

__all__ = ["CorePlan", "available_cores", "keep_freed_memory", "plan_cores", "sized"]

log = logging.getLogger(__name__)

# nice increment of decoders sharing the cores with a CPU backbone: they yield to it.
CPU_DECODER_NICE = 10

# glibc mallopt parameters (malloc.h) and their defaults.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536


@dataclass(frozen=True)
class CorePlan:
    """Who gets the cores in one extract run."""

    cores: int  # cores this process may run on
    workers: int  # decode processes (0: decode in the sink's process)
    decoder_threads: int  # FFmpeg threads per decoder (0: FFmpeg's choice)
    torch_threads: int  # intra-op threads of the backbone process
    decoder_nice: int  # nice increment of the decode processes

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
               decoder_nice: int | None = None) -> CorePlan:
    """The plan for a backbone on `device_type` ("cpu", "cuda", ...); given values are kept as they are."""
    cores = cores or available_cores()
    on_cpu = device_type == "cpu"
    workers = cores if workers is None else workers
    if decoder_threads is None:
        # One thread per decoder while there is a decoder per core; fewer decoders share the rest;
        # decoding in the sink's process (workers 0) alternates with inference, so it takes them all.
        decoder_threads = 0 if workers == 0 else 1 if workers >= cores else max(cores // workers, 1)
    if torch_threads is None:
        torch_threads = cores if on_cpu else 1
    if decoder_nice is None:
        decoder_nice = CPU_DECODER_NICE if on_cpu and workers > 0 else 0
    return CorePlan(cores, workers, decoder_threads, torch_threads, decoder_nice)


def sized(cfg: ExtractConfig, device_type: str, *, cores: int | None = None) -> ExtractConfig:
    """`cfg` with its unset core keys filled in by `plan_cores` (Ray: `workers` stays the cluster's)."""
    plan = plan_cores(device_type, cores=cores, workers=cfg.workers, decoder_threads=cfg.decoder_threads,
                      torch_threads=cfg.torch_threads, decoder_nice=cfg.decoder_nice)
    workers = cfg.workers if cfg.executor == "ray" else plan.workers
    decoder_threads = plan.decoder_threads if cfg.executor != "ray" or cfg.decoder_threads is not None else 1
    return dataclasses.replace(cfg, workers=workers, decoder_threads=decoder_threads,
                               torch_threads=plan.torch_threads, decoder_nice=plan.decoder_nice)


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
