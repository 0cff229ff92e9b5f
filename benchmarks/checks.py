"""What `benchmark`'s input checks cost (issue 23): checking every run of a grid against a workdir
(`pipeline.benchmark.check_inputs`: feature set, splits, model/loss/mix, class groups), against the
listing a dry run did before (`plan` + `run_status`), in one process, median of `--repeats`.

    python benchmarks/checks.py WORKDIR [--config configs/table6_beyond.yaml] [--repeats 3]

The workdir needs the grid's feature sets (any number of done rows); see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from videolt.data.workdir import Workdir
from videolt.pipeline.benchmark import check_inputs, load_benchmark, plan, run_status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--config", default="configs/table6_beyond.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the checks' warnings are not what is measured
    wd, config = Workdir.open(args.workdir), load_benchmark(args.config)
    with wd.manifest() as m:
        videos = len(m)

    def listing() -> int:
        cells = plan(config)
        return sum(run_status(wd, c) != "done" for c in cells)

    def checks() -> int:
        found = check_inputs(wd, [c for c in plan(config) if run_status(wd, c) != "done"])
        return len(found["errors"]) + len(found["warnings"])

    times: dict[str, list[float]] = {"listing": [], "checks": []}
    for _ in range(args.repeats):  # interleaved, so that the machine's load hits both alike
        for name, fn in (("listing", listing), ("checks", checks)):
            tic = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - tic)
    runs = len(plan(config))
    ref, got = statistics.median(times["listing"]), statistics.median(times["checks"])
    print(f"{args.config}: {runs} runs, {videos:,} videos in the manifest")
    print(f"listing (plan + run_status): {ref:.2f} s; checks (check_inputs): {got:.2f} s = {got / ref:.0f}x the "
          f"listing, {got / runs:.2f} s per run")


if __name__ == "__main__":
    main()
