"""Latency statistics as ais_bench and trtexec report them, the machine's name, and the guide's reference figures.

The ONNX Runtime runner prints, after msame's own lines, an ais_bench-style block that perf_calc.py reads:

    [INFO] compute_time (ms): min = .., max = .., mean = .., median = .., percentile(90%) = .., percentile(99%) = ..
    [INFO] throughput 1000*batchsize(B)/compute_time.mean(M): T

Percentiles are numpy's (linear interpolation between samples), as ais_bench computes them. Needs numpy only.
"""

import functools
import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path

import numpy as np

PERCENTILES = (90, 99)
# A decimal number as the tools print it (0.43, 1.5e-05, 12); never a bare "e" or "." (found by fuzzing: "max =ercentile").
DECIMAL = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
STAT_PAIR = re.compile(r"\b(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*(" + DECIMAL + r"|nan|inf)\b")


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


# The instruction sets that decide this model's speed and its int8 results, as /proc/cpuinfo flags name them.
ISA_FLAGS = (("AVX2", "avx2"), ("AVX-512F", "avx512f"), ("AVX512-VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"), ("AMX", "amx_int8"))


@functools.cache
def cpu_features(cpuinfo="/proc/cpuinfo"):
    """{model, isa, cores} of this machine: the processor's name, which of AVX2, AVX-512F, AVX512-VNNI, AVX-VNNI and
    AMX (int8 tiles) it has, and the cores this process may use. Read once per process."""
    model, flags = None, set()
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    found = {
        "model": model or platform.processor() or "unknown CPU",
        "isa": [name for name, flag in ISA_FLAGS if flag in flags],
        "cores": cores,
    }
    return found


def versions(*packages):
    """{python, <package>: version or "not installed"}: what a run records beside its figures."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


UNSTABLE_CV = 0.10  # pyperf's rule: a spread above 10% of the mean is not a measurement to compare
BUSY_SHARE = 0.10  # the share of wall time in which tasks waited for a CPU (or the host stole it) beyond which a run is busy


class MachineLoad:
    """How busy the machine was while a block ran: the share of its wall time in which some task waited for a CPU
    (Linux's pressure stall information, /proc/pressure/cpu; None where the kernel has none), the share of CPU time
    the hypervisor gave to others (steal, /proc/stat), and the load averages before and after. A run that waited
    for CPUs was measured on a busy machine: its figures are noise, not change."""

    def __enter__(self):
        self.wall, self.stall, self.cpu, self.own = time.monotonic(), _cpu_stall_us(), _cpu_jiffies(), _own_jiffies()
        self.loadavg_before = _loadavg()
        return self

    def __exit__(self, *exc):
        wall, stall, cpu, own = time.monotonic() - self.wall, _cpu_stall_us(), _cpu_jiffies(), _own_jiffies()
        share = (stall - self.stall) / 1e6 / wall if stall is not None and self.stall is not None and wall > 0 else None
        steal = others = None
        if cpu and self.cpu and len(cpu) > 7 and sum(cpu[:8]) > sum(self.cpu[:8]):
            total = sum(cpu[:8]) - sum(self.cpu[:8])
            steal = (cpu[7] - self.cpu[7]) / total
            busy = sum(cpu[k] - self.cpu[k] for k in (0, 1, 2, 5, 6))  # user, nice, system, irq, softirq
            others = (busy - (own - self.own)) / total if own is not None and self.own is not None else None
        self.figures = {"cpu_wait_share": _share(share), "loadavg": _loadavg(), "loadavg_before": self.loadavg_before}
        self.figures["steal_share"], self.figures["others_cpu_share"] = _share(steal), _share(others)
        return False


def _share(value):
    return None if value is None else round(min(max(value, 0.0), 1.0), 4)


def describe_load(figures):
    """`tasks waited for a CPU 3.2% of the time; steal 0.0%; load average 0.52 0.40 0.31 (before: ...)`: beside a timing."""
    share, loadavg, steal = figures.get("cpu_wait_share"), figures.get("loadavg"), figures.get("steal_share")
    waited = "CPU waits not measured (no /proc/pressure/cpu)" if share is None else f"tasks waited for a CPU {share:.1%} of the time"
    if figures.get("others_cpu_share") is not None:
        waited += f"; other processes used {figures['others_cpu_share']:.1%} of the CPUs"
    if steal is not None:
        waited += f"; CPU stolen by the host {steal:.1%}"
    before = figures.get("loadavg_before")
    after = f" (before: {' '.join(f'{v:g}' for v in before)})" if before else ""
    return waited + (f"; load average {' '.join(f'{v:g}' for v in loadavg)}{after}" if loadavg else "")


def block_spread(times_ms, blocks=5):
    """The coefficient of variation of the means of `blocks` consecutive blocks of per-call times (their standard
    deviation over their mean), with the block count; None for fewer than 2 calls per block. Slow drift and
    bursts from a neighbour show here, where a per-call distribution mixes them with the model's own jitter."""
    times = np.asarray(times_ms, dtype=np.float64)
    blocks = min(blocks, times.size // 2)
    if blocks < 2:
        return None
    means = np.array([part.mean() for part in np.array_split(times, blocks)])
    return {"cv": float(means.std(ddof=1) / means.mean()) if means.mean() > 0 else 0.0, "blocks": int(blocks)}


def unstable_reasons(spread=None, load=None):
    """What makes a timing unfit to compare, in words (empty when nothing does): a spread above UNSTABLE_CV, or a
    machine whose tasks waited for a CPU, or whose CPU was stolen, more than BUSY_SHARE of the time."""
    reasons = []
    if spread and spread.get("cv") is not None and spread["cv"] > UNSTABLE_CV:
        reasons.append(
            f"the means of {spread['blocks']} blocks vary by {spread['cv']:.1%} (coefficient of variation; above {UNSTABLE_CV:.0%})"
        )
    # other processes' CPU time, not CPU waits: a benchmark's own idle thread pools make its tasks wait too
    busy = (
        ("others_cpu_share", "other processes used")
        if (load or {}).get("others_cpu_share") is not None
        else ("cpu_wait_share", "tasks waited for a CPU")
    )
    for key, words in (busy, ("steal_share", "the host stole the CPU")):
        if (load or {}).get(key) is not None and load[key] > BUSY_SHARE:
            reasons.append(f"{words} {load[key]:.1%} of the time (above {BUSY_SHARE:.0%})")
    return reasons


def describe_spread(spread):
    return "not measured (fewer than 4 calls)" if not spread else f"{spread['cv']:.1%} (CV of {spread['blocks']} blocks' means)"


def _loadavg():
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _cpu_jiffies(path="/proc/stat"):
    try:
        return [int(v) for v in Path(path).read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None


def _own_jiffies(path="/proc/self/stat"):
    """CPU time (clock ticks) of this process and of its children waited for: utime, stime, cutime, cstime."""
    try:
        return sum(int(v) for v in Path(path).read_text().rsplit(")", 1)[1].split()[11:15])
    except (OSError, ValueError):
        return None


def _cpu_stall_us(path="/proc/pressure/cpu"):
    try:
        some = Path(path).read_text().split("\n")[0]
        return int(some.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


def describe_cpu(cpu=None):
    """`<model> (AVX2, AVX-512F, ...), N cores`: the words that go beside every figure."""
    cpu = cpu or cpu_features()
    return f"{cpu['model']} ({', '.join(cpu['isa']) or 'no AVX2'}), {cpu['cores']} cores"


# ---------------------------------------------------------------------------------------------------------
# One chip rule for every images/s figure of this project (perf_calc.py, perf_sweep.py, the driver, the report).

NPU_TOOLS = ("msame", "ais_bench")


def card_chips(tool, devices=None, soc=None, given=None):
    """(chips, rule in words): how many chips one run's figure is multiplied by to give images/s per card.

    given (--chips): that. A run measured on N >= 2 devices (a card run): N, measured. One chip of an NPU tool
    (msame, ais_bench): x4 on an Ascend 310 card, the ModelZoo rule (also where the chip was not recorded, as
    in the guide's logs), x1 on any other chip (a 310P card has one). ONNX Runtime and trtexec: the workers or
    GPUs that ran, measured."""
    if given:
        return given, f"{given} chip(s), as given (--chips)"
    if devices and devices > 1:
        return devices, f"{devices} devices, measured (a card run)"
    if tool in NPU_TOOLS:
        if soc in (None, "Ascend310"):
            where = "Ascend310" if soc else "the chip is not recorded in the log: Ascend310 assumed; --chips 1 for a 310P"
            return 4, f"x4, the ModelZoo rule for one chip of an Ascend 310 card ({where})"
        return 1, f"1, one chip of {soc} (no x4: that rule is for the 4-chip Ascend 310 card)"
    return 1, f"1 {'worker' if tool == 'onnxruntime' else 'GPU'}, measured"


# ---------------------------------------------------------------------------------------------------------
# The guide's reference figures (images/s per card), from ../shared/reference/modelzoo_gan_facts.md: the old
# revision's msame and trtexec tables, and the newer revision's ais_bench sweep over six batch sizes.

REFERENCE_SERIES = {
    "Ascend 310 card (4 chips), msame, guide": {1: 9302.326, 16: 136170.213},
    "Ascend 310 card, ais_bench, newer guide": {1: 12121.21, 4: 48484.84, 8: 94117.64, 16: 206451.61, 32: 387878.78, 64: 711111.11},
    "Ascend 310P3, ais_bench --loop 10, newer guide": {1: 9007.47, 4: 39253.0, 8: 79647.0, 16: 160191.0, 32: 296927.0, 64: 469239.0},
    "NVIDIA T4, trtexec --fp16, guide": {1: 12105.394, 16: 180332.895},
}


# ---------------------------------------------------------------------------------------------------------
# Timing several engines fairly: blocks interleaved, so that a change in the machine's load hits all of them.


def time_interleaved(calls, blocks=9, block_seconds=0.05, lead_in_seconds=0.02):
    """{name: {ms, cv, blocks}}: each call's time per call (ms), the median of `blocks` blocks run in turn with the
    other calls' (the order rotated every round), and the coefficient of variation of its blocks. Each block starts
    with `lead_in_seconds` of untimed calls, so that the threads the previous engine left spinning are done."""
    names = list(calls)
    if not names:
        return {}
    repeats = {}
    for name in names:  # warm-up, and the calls per block
        start, count = time.perf_counter(), 0
        while count < 3 or time.perf_counter() - start < 0.1:
            calls[name]()
            count += 1
        per_call = (time.perf_counter() - start) / count
        repeats[name] = (max(1, int(lead_in_seconds / per_call)), max(3, int(block_seconds / per_call)))
    found = {name: [] for name in names}
    for round_ in range(blocks):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            lead, timed = repeats[name]
            for _ in range(lead):
                calls[name]()
            tick = time.perf_counter()
            for _ in range(timed):
                calls[name]()
            found[name].append((time.perf_counter() - tick) * 1000 / timed)
    result = {}
    for name, times in found.items():
        times = np.array(times)
        result[name] = {"ms": float(np.median(times)), "cv": float(times.std(ddof=1) / times.mean()), "blocks": times.tolist()}
    return result
