#!/usr/bin/env python3
"""Ray baseline for bench/tasks.sh (issue 5: Nubo durable tasks vs Ray in-memory tasks).

Measures, on a local 2-CPU Ray instance:
  * latency    - sequential round trips of ray.get(noop.remote(b"x")) (mean/p50/p99, us)
  * throughput - submit N trivial tasks, then ray.get all; tasks/s over submit+get (3 runs)
  * cpu fan-out - K calls of a pure-Python integer loop burn(W): sequentially in the
                  driver vs. as K Ray tasks; reports both times and the speedup.
Prints exactly one JSON object on stdout; everything else goes to stderr.
"""
import argparse
import json
import logging
import statistics
import sys
import time

import ray


def burn(w):
    """Deterministic CPU work: FNV-1a-like hash over range(w)."""
    h = 2166136261
    for i in range(w):
        h = ((h ^ i) * 16777619) & 0xFFFFFFFF
    return h


@ray.remote
def noop(x):
    return x


burn_remote = ray.remote(burn)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=int, default=1000, help="sequential round trips")
    p.add_argument("--tasks", type=int, default=10000, help="tasks per throughput run")
    p.add_argument("--chunks", type=int, default=8, help="burn() calls in the fan-out")
    p.add_argument("--work", type=int, default=2_000_000, help="burn() iterations (~0.25 s)")
    a = p.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, configure_logging=True)
    try:
        log("warming up")
        ray.get([noop.remote(i) for i in range(300)])
        for _ in range(50):
            ray.get(noop.remote(b"x"))

        log(f"latency: {a.latency} round trips")
        lat = []
        for _ in range(a.latency):
            t = time.perf_counter()
            ray.get(noop.remote(b"x"))
            lat.append((time.perf_counter() - t) * 1e6)
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]

        runs = []
        for r in range(3):
            t = time.perf_counter()
            out = ray.get([noop.remote(i) for i in range(a.tasks)])
            dt = time.perf_counter() - t
            assert out == list(range(a.tasks))
            runs.append(a.tasks / dt)
            log(f"throughput run {r + 1}: {runs[-1]:.0f} tasks/s")

        log(f"cpu: {a.chunks} x burn({a.work}) sequential")
        t = time.perf_counter()
        seq = [burn(a.work) for _ in range(a.chunks)]
        seq_s = time.perf_counter() - t
        log(f"cpu: {a.chunks} x burn({a.work}) as Ray tasks")
        t = time.perf_counter()
        par = ray.get([burn_remote.remote(a.work) for _ in range(a.chunks)])
        par_s = time.perf_counter() - t
        assert seq == par, "sequential and Ray results differ"

        print(json.dumps({
            "latency_us_mean": round(statistics.fmean(lat), 1),
            "latency_us_p50": round(statistics.median(lat), 1),
            "latency_us_p99": round(p99, 1),
            "throughput_runs": [round(x, 1) for x in runs],
            "throughput_best": round(max(runs), 1),
            "cpu_seq_s": round(seq_s, 3),
            "cpu_par_s": round(par_s, 3),
            "cpu_speedup": round(seq_s / par_s, 2),
            "chunks": a.chunks,
            "work": a.work,
            "ray_version": ray.__version__,
        }))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
