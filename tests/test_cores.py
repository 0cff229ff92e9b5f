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
