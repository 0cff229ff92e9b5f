"""How the extract stage shares the cores (`videolt.extract.cores`): the plan from the core count and
the device, config keys that override it, and the inference process's allocator setting."""

from __future__ import annotations

import sys

import pytest

from videolt.extract.config import ExtractConfig
from videolt.extract.cores import CorePlan, available_cores, keep_freed_memory, plan_cores, sized


def test_gpu_gets_one_single_threaded_decoder_per_core():
    plan = plan_cores("cuda", cores=16)
    assert plan == CorePlan(cores=16, workers=16, decoder_threads=1, torch_threads=1, decoder_nice=0)


def test_cpu_backbone_gets_every_core_and_a_quarter_of_them_decode():
    assert plan_cores("cpu", cores=2) == CorePlan(cores=2, workers=1, decoder_threads=1, torch_threads=2,
                                                  decoder_nice=0)
    plan = plan_cores("cpu", cores=16)
    assert (plan.workers, plan.decoder_threads, plan.torch_threads) == (4, 1, 16)
    assert plan.describe() == "16 cores: 4 decode process(es) of 1 thread(s), 16 inference thread(s)"


@pytest.mark.parametrize("workers,threads", [(0, 0), (1, 8), (3, 2), (8, 1), (20, 1)])
def test_fewer_decoders_share_the_cores_beside_a_gpu(workers, threads):
    """Decoding in the sink's process takes FFmpeg's thread choice; fewer decoders than cores split them."""
    assert plan_cores("cuda", cores=8, workers=workers).decoder_threads == threads


def test_several_cpu_sinks_share_the_cores_as_torch_threads():
    assert plan_cores("cpu", cores=4, sinks=2).torch_threads == 2
    assert plan_cores("cpu", cores=2, sinks=3).torch_threads == 1  # at least one each
    assert plan_cores("cuda", cores=16, sinks=8) == plan_cores("cuda", cores=16)  # beside GPUs every core decodes


def test_given_values_are_kept():
    plan = plan_cores("cpu", cores=4, workers=3, decoder_threads=2, torch_threads=1, decoder_nice=0)
    assert plan == CorePlan(cores=4, workers=3, decoder_threads=2, torch_threads=1, decoder_nice=0)
    assert available_cores() >= 1


def test_sized_config_fills_only_unset_keys_and_leaves_ray_its_cluster():
    cfg = sized(ExtractConfig(workers=3, decoder_nice=5), "cpu", cores=4)
    assert (cfg.workers, cfg.decoder_threads, cfg.torch_threads, cfg.decoder_nice) == (3, 1, 4, 5)
    ray = sized(ExtractConfig(executor="ray"), "cuda", cores=4)
    assert ray.workers is None and ray.decoder_threads == 1  # one decode task per cluster CPU


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_on_glibc():
    try:
        assert keep_freed_memory() in (True, False)  # False only where libc is not glibc (no mallopt)
    finally:
        keep_freed_memory(False)


_FAULTS = """
import resource, sys, threading
import numpy as np
from videolt.extract.cores import keep_freed_memory, one_malloc_arena
if sys.argv[1] == "one":
    one_malloc_arena()
keep_freed_memory()
out = []

def passes():  # what a sink's forward thread does: the same large buffers allocated and freed, pass after pass
    for k in range(6):
        if k == 1:
            out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        a = np.ones(96 << 20, dtype=np.uint8)  # 96 MiB, as a 150-frame float batch: larger than a thread heap (64 MiB)
        del a
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)

t = threading.Thread(target=passes)
t.start()
t.join()
print(out[1] - out[0])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_one_arena_keeps_a_threads_freed_pages():
    """Without one arena, a thread's own arena gives its freed heap back and faults it in on every pass."""
    import subprocess

    faults = {how: int(subprocess.run([sys.executable, "-c", _FAULTS, how], capture_output=True, text=True,
                                      check=True).stdout) for how in ("one", "own")}
    passes = 5 * (96 << 20) // (2 << 20)  # pages faulted in by 5 passes, at the most (2 MiB huge pages)
    assert faults["own"] >= passes, faults  # the thread's arena maps each pass's buffer anew
    assert faults["one"] * 20 < faults["own"], faults  # one arena: the passes after the first reuse its pages
