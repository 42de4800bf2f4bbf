"""Latency statistics as ais_bench and trtexec report them, the machine's name, and the guide's reference figures.

The ONNX Runtime runner prints, after msame's own lines, an ais_bench-style block that perf_calc.py reads:

    [INFO] compute_time (ms): min = .., max = .., mean = .., median = .., percentile(90%) = .., percentile(99%) = ..
    [INFO] throughput 1000*batchsize(B)/compute_time.mean(M): T

Percentiles are numpy's (linear interpolation between samples), as ais_bench computes them. Needs numpy only.
"""

import platform
import re
from pathlib import Path

import numpy as np

PERCENTILES = (90, 99)
STAT_PAIR = re.compile(r"\b(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+|nan|inf)")


def latency_stats(times_ms):
    """{min, max, mean, median, percentile(90%), percentile(99%), count} of per-call times, ais_bench's field names."""
    times = np.asarray(times_ms, dtype=np.float64)
    stats = {"min": float(times.min()), "max": float(times.max()), "mean": float(times.mean()), "median": float(np.median(times))}
    for q in PERCENTILES:
        stats[f"percentile({q}%)"] = float(np.percentile(times, q))
    stats["count"] = int(times.size)
    return stats


def stats_lines(stats, batch, prefix="[INFO] ", label="compute_time"):
    """The two lines of the block: the distribution, and ais_bench's throughput formula on the mean (one chip)."""
    spread = ", ".join(f"{key} = {stats[key]:.6f}" for key in ("min", "max", "mean", "median", *(f"percentile({q}%)" for q in PERCENTILES)))
    return [
        f"{prefix}{label} (ms): {spread}",
        f"{prefix}throughput 1000*batchsize({batch:g})/{label}.mean({stats['mean']:.6f}): {1000 * batch / stats['mean']:.3f}",
    ]


def parse_stats(line):
    """{min, max, mean, median, p90, p99, ...} from a line of `key = value` pairs (ais_bench, trtexec 8+, this runner)."""
    found = {}
    for key, quantile, value in STAT_PAIR.findall(line):
        found[f"p{float(quantile):g}" if quantile else key] = float(value)
    return found


def cpu_name():
    """The processor's model name, for the tables that say which machine gave a figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------------------------------------------------
# The guide's reference figures (images/s per card), from ../shared/reference/modelzoo_gan_facts.md: the old
# revision's msame and trtexec tables, and the newer revision's ais_bench sweep over six batch sizes.

REFERENCE_SERIES = {
    "Ascend 310 card (4 chips), msame, guide": {1: 9302.326, 16: 136170.213},
    "Ascend 310 card, ais_bench, newer guide": {1: 12121.21, 4: 48484.84, 8: 94117.64, 16: 206451.61, 32: 387878.78, 64: 711111.11},
    "Ascend 310P3, ais_bench --loop 10, newer guide": {1: 9007.47, 4: 39253.0, 8: 79647.0, 16: 160191.0, 32: 296927.0, 64: 469239.0},
    "NVIDIA T4, trtexec --fp16, guide": {1: 12105.394, 16: 180332.895},
}
