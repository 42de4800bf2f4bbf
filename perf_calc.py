"""Throughput from the logs of msame, ais_bench, trtexec and the ONNX Runtime runner (the guide's section 7).

    python perf_calc.py --log GAN_bs64.log
    python perf_calc.py --log msame_bs16.log --baseline trtexec_bs16.log

throughput (images/s) = 1000 x batch x chips / latency_ms, with the latency each tool means (the mean time of one
batch on one chip, GPU or worker): msame's "Inference average time", ais_bench's NPU_compute_time mean,
trtexec's GPU Compute mean (7.x block or 8.x-10.x "GPU Compute Time" line), and this project's runner (msame's
lines, more decimals). chips follows the project's one rule (gan.perf.card_chips), printed with every figure:
--chips where given; the devices measured for a card run (run_msame.sh --device 0,1,2,3, ais_bench's
multi-device summary, the runner's workers); x4 for one chip of msame or ais_bench on an Ascend 310 card (the
ModelZoo rule; the chip is read from the driver's log, assumed a 310 where the log does not say), x1 on a 310P;
1 for trtexec.
The distribution is reported where the log has one: p50 (the median) and p99 from ais_bench's summary
(text or JSON), trtexec's GPU Compute block (7.x "median" and "percentile: X ms at 99%", 8.x-10.x
"percentile(99%)"), the runner's compute_time block, a card run's pooled block, and msame's own per-call
"Inference time" lines when the log holds at least two; "-" where the log has none (never a made-up figure).
The batch comes from --batch_size, else from the log (a model name
such as GAN_bs16.om, trtexec's --shapes, ais_bench's summary, the runner's own line). With --baseline, each
log is compared with the baseline of the same batch: the ModelZoo rule asks for at least 0.5 x its fps.
Needs no torch and no onnxruntime (numpy, through gan/files.py).
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import json
import math
import re
import sys
from pathlib import Path

from gan.cli import HelpFormatter, InputError, check_output_file, positive_int, refuse_overlap, run_main, short_list
from gan.files import read_text
from gan.perf import DECIMAL, block_spread, card_chips, describe_spread, latency_stats, parse_stats

KNOWN_FORMATS = (
    "msame (folder or file mode)",
    "ais_bench / ais_infer (printed summary or summary JSON)",
    "trtexec 7.x or 8.x-10.x",
    "this project's ONNX Runtime runner (msame_onnxruntime.py)",
)
RUNNER_MARKER = "ONNX Runtime runner with msame's interface"
RUNNER_START = re.compile(r"^\[INFO\] " + re.escape(RUNNER_MARKER) + "$", re.M)  # the runner's first line, once per run
NUMBER = r"(\S+?)"

MSAME_AVERAGE = re.compile(r"^(?:\[INFO\]\s*)?Inference average time(\s*):\s*" + NUMBER + r"\s*ms\s*$", re.M)
MSAME_PER_RUN = re.compile(r"^Inference time:", re.M)
AIS_THROUGHPUT = re.compile(r"throughput.*?:\s*(" + DECIMAL + r")\s*$", re.M)
AIS_BATCH = re.compile(r"1000\*batchsize(?:\.mean)?\((" + DECIMAL + r")\)")
AIS_DEVICES = re.compile(r"device_(\d+) throughput:")
TRT8_GPU = re.compile(r"GPU Compute Time: .*?mean = " + NUMBER + r" ms.*$", re.M)
TRT7_HEADER = re.compile(r"\]\s+GPU Compute\s*$", re.M)
TRT7_MEAN = re.compile(r"\]\s+mean:\s+" + NUMBER + r" ms\s*$", re.M)
TRT7_MEDIAN = re.compile(r"\]\s+median:\s+(" + DECIMAL + r") ms\s*$", re.M)
TRT7_PERCENTILE = re.compile(r"\]\s+percentile:\s+(" + DECIMAL + r") ms at (" + DECIMAL + r")%\s*$", re.M)
BLOCK = re.compile(r"^\[INFO\] compute_time \(ms\): (.*)$", re.M)  # the runner's and a card run's pooled block
SPREAD = re.compile(r"^\[INFO\] spread: (" + DECIMAL + r")% \(CV of (\d+) blocks", re.M)  # the runner's
UNSTABLE = re.compile(r"^\[WARN\] unstable: (.*?)$", re.M)  # the runner's
PER_CALL = re.compile(r"^Inference time:\s*(" + DECIMAL + r")\s*ms", re.M)  # msame's own, unprefixed
TRT_SHAPES = re.compile(r"--shapes[= ]'?[\w.:/-]+?'?:(\d+)x")
MODEL_BATCH = re.compile(r"_bs(\d+)[\w.-]*\.(?:om|onnx|engine|trt)\b")
RUNNER_BATCH = re.compile(r"batch size (\d+),.*?(\d+) worker\(s\)")
RUNNER_BATCH_LINE = re.compile(r"^\[INFO\] model .*, batch size .*worker\(s\)$", re.M)
THROUGHPUT_FORMULA = re.compile(
    r"throughput 1000\*batchsize(?:\.mean)?\((" + DECIMAL + r")\)/\w+\.mean\((" + DECIMAL + r")\): (" + DECIMAL + r")\s*$", re.M
)
CARD_DEVICES = re.compile(r"card summary: (\d+) devices")  # run_msame.sh's card runs (msame_driver.py, the runner)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--log", action="append", required=True, help="a tool's log (repeat for several)")
    parser.add_argument("--batch_size", type=positive_int, default=None, help="batch size of every --log (default: read from the log)")
    parser.add_argument("--chips", type=positive_int, default=None, help="chips per card (default: the rule above; 1 for a 310P)")
    parser.add_argument("--baseline", action="append", default=[], help="baseline log, e.g. trtexec on a T4 (repeatable)")
    parser.add_argument("--baseline_batch_size", type=positive_int, default=None, help="batch size of every --baseline")
    parser.add_argument("--baseline_chips", type=positive_int, default=None, help="chips of the baseline (default: the rule above)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--save_json", default=None, help="also save the table as JSON here (GAN_report.py reads it)")
    return parser


def _latency(path, text):
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: latency {text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise InputError(f"{path}: latency {text} ms is not a positive number")
    return value


# A tool's log of even a million timed calls is a few tens of MB; anything larger is not a log.
MAX_LOG_BYTES = 64 * 1024 * 1024


def read_log(path):
    """A log's text: a regular file of at most MAX_LOG_BYTES (not a device such as /dev/urandom, nor a pipe), through the
    one text decoder (UTF-8; a BOM, CRLF or CR line ends read as on Linux; UTF-16 and NUL bytes refused)."""
    return read_text(path, "tool's log", MAX_LOG_BYTES)


# What a log must hold, at the start of a line, to be read as that tool's (a README quoting the words is not a log).
SIGNATURES = (
    ("onnxruntime", RUNNER_START),
    ("ais_bench", re.compile(r"^(?:\[device \d+\] )?\[INFO\] (?:-+Performance Summary-+|NPU_compute_time \(ms\):)", re.M)),
    ("trtexec", re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[I\] ", re.M)),
    ("msame", re.compile(r"^(?:\[device \d+\] )?(?:\[INFO\] )?Inference (?:average )?time\s*:", re.M)),
)
# The tools whose lines one run's log may hold together: the runner prints msame's lines; nothing else mixes.
ONE_RUN_TOOLS = ({"onnxruntime", "msame"}, {"msame"}, {"ais_bench"}, {"trtexec"})
CHIP = re.compile(r"\(chip (Ascend\w+), from ")  # the driver's first line names the chip of its atc record


def parse_log(path):
    """{tool, latency_ms, batch_size or None, devices or None, soc or None, ...} of one log, recognizing its format
    by lines only that tool prints, after checking that the log holds one run of one tool (check_one_run)."""
    text = read_log(path)
    if text.lstrip().startswith("{"):
        return _parse_ais_json(path, text)
    found = [name for name, signature in SIGNATURES if signature.search(text)]
    if not found:
        raise InputError(f"{path}: not a log of a known tool (no timing line of one); known formats: {'; '.join(KNOWN_FORMATS)}")
    if set(found) not in ONE_RUN_TOOLS:
        raise InputError(f"{path}: holds lines of {' and '.join(found)}: the logs of two tools in one file; pass each run's own log")
    tool = found[0]
    check_one_run(path, text, tool)
    if tool == "ais_bench":
        result = _parse_ais_text(path, text)
    elif tool == "trtexec":
        if "GPU Compute" not in text:
            raise InputError(f"{path}: truncated trtexec log: no 'GPU Compute' block or line")
        result = _parse_trtexec(path, text)
    else:
        result = _parse_msame_like(path, text, tool)
    card = CARD_DEVICES.search(text)  # a card run of run_msame.sh says how many devices it used
    if card:
        result["devices"] = int(card.group(1))
    chip = CHIP.search(text)
    result["soc"] = chip.group(1) if chip else None
    return result


# ---------------------------------------------------------------------------------------------------------
# One run per log: `tee -a` onto an old log, two logs pasted together or a line added by hand must not give a figure
# made of two runs. Each tool's once-per-run lines are counted (per device where a card run prefixes them), and the
# figures a log repeats are checked against each other.

ONCE_PER_RUN = {
    "onnxruntime": {
        "the runner's start line": RUNNER_START,
        "the runner's model line": RUNNER_BATCH_LINE,
        "the compute_time block": BLOCK,
    },
    "msame": {},
    "ais_bench": {
        "the performance summary": re.compile(r"^(?P<device>\[device \d+\] )?\[INFO\] -+Performance Summary-+", re.M),
        "the NPU_compute_time line": re.compile(r"^(?P<device>\[device \d+\] )?\[INFO\] NPU_compute_time \(ms\):", re.M),
    },
    "trtexec": {
        "the performance summary": re.compile(r"=== Performance summary ===\s*$", re.M),
        "the GPU Compute Time line": re.compile(r"\] GPU Compute Time: ", re.M),  # not "Total GPU Compute Time: S s"
        "the GPU Compute block": TRT7_HEADER,
    },
}
AVERAGE_ONCE = re.compile(r"^(?P<device>\[device \d+\] )?(?:\[INFO\]\s*)?Inference average time\s*:", re.M)
SUCCESS_ONCE = re.compile(r"^(?P<device>\[device \d+\] )?\[INFO\] (?:pid: \d+ )?Execute sample success", re.M)


def check_one_run(path, text, tool):
    """Refuse, in one line that says so, a log holding more than one run: a once-per-run line twice (per device), model
    names or shapes of two batch sizes, or a figure that contradicts the rest of the log."""
    patterns = dict(ONCE_PER_RUN[tool])
    if tool in ("onnxruntime", "msame"):
        patterns.update({"msame's 'Inference average time' line": AVERAGE_ONCE, "msame's success line": SUCCESS_ONCE})
    for what, pattern in patterns.items():
        seen = [m.group("device") if "device" in pattern.groupindex else None for m in pattern.finditer(text)]
        repeated = sorted({k for k in seen if seen.count(k) > 1}, key=str)
        if repeated:
            where = f" of {repeated[0].strip()}" if repeated[0] else ""
            raise InputError(
                f"{path}: {what}{where} appears {seen.count(repeated[0])} times: the log holds more than one run "
                f"(appended with tee -a or pasted together); pass one run's log"
            )
    batches = sorted({int(b) for b in MODEL_BATCH.findall(text)} | {int(b) for b in TRT_SHAPES.findall(text)})
    if len(batches) > 1:
        raise InputError(f"{path}: names models or shapes of batch sizes {short_list(batches)}: the log holds more than one run")
    _check_figures(path, text, tool)


def _check_figures(path, text, tool):
    """The figures a log states twice agree: the average line with the per-call lines (msame) or with the
    compute_time block (the runner), and each throughput line with 1000 x batch / mean."""
    average = MSAME_AVERAGE.search(text)
    if tool == "onnxruntime" and average and BLOCK.search(text):
        mean = parse_stats(BLOCK.search(text).group(1)).get("mean")
        stated = _float(average.group(2))
        if mean is not None and stated is not None and not math.isclose(mean, stated, rel_tol=1e-5, abs_tol=2e-6):
            raise InputError(
                f"{path}: 'Inference average time' {stated:g} ms but the compute_time block's mean is {mean:g} ms: the lines of "
                f"two runs; pass one run's log"
            )
    if tool == "msame" and average:
        calls = [float(v) for v in PER_CALL.findall(text)]
        stated = _float(average.group(2))
        decimals = len(average.group(2).partition(".")[2])
        if len(calls) >= 2 and stated is not None:
            mean = sum(calls) / len(calls)
            allowed = 0.5 * 10.0**-decimals + 1e-5 * mean  # the average's own rounding, and 6 significant digits per call
            if abs(mean - stated) > allowed:
                raise InputError(
                    f"{path}: 'Inference average time' {stated:g} ms but its {len(calls)} 'Inference time' lines average "
                    f"{mean:.6g} ms: the lines of two runs, or an edited log; pass one run's log"
                )
    for batch, mean, stated in THROUGHPUT_FORMULA.findall(text):
        batch, mean, stated = _float(batch), _float(mean), _float(stated)
        if batch and mean and stated is not None and not math.isclose(1000 * batch / mean, stated, rel_tol=1e-3):
            raise InputError(
                f"{path}: throughput {stated:g} is not 1000 x {batch:g} / {mean:g} as its own line says: an edited log; "
                f"pass the tool's log as it wrote it"
            )


def _float(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _batch_from_names(text):
    match = MODEL_BATCH.search(text)
    return int(match.group(1)) if match else None


def _spread(stats):
    """p50 and p99 (None where absent) from parsed `key = value` statistics."""
    return {"p50_ms": stats.get("median"), "p99_ms": stats.get("p99")}


def _parse_msame_like(path, text, tool):
    averages = MSAME_AVERAGE.findall(text)
    if not averages:
        raise InputError(f"{path}: truncated {tool} log: per-run 'Inference time' lines but no 'Inference average time' line")
    # The last average line is the whole run's (a card run prints each chip's first, with a prefix).
    spacing, value = averages[-1]
    result = {
        "tool": tool,
        "mode": "folder" if spacing else "file",
        "latency_ms": _latency(path, value),
        "batch_size": _batch_from_names(text),
        "devices": None,
        "p50_ms": None,
        "p99_ms": None,
    }
    blocks = BLOCK.findall(text)
    calls = [float(v) for v in PER_CALL.findall(text)]
    if blocks:  # the runner's own block (the card's, pooled, comes last)
        result.update(_spread(parse_stats(blocks[-1])), distribution="compute_time block")
    else:
        if len(calls) >= 2:  # msame's per-call lines are a distribution too (6 significant digits)
            stats = latency_stats(calls)
            result.update(
                p50_ms=stats["median"], p99_ms=stats["percentile(99%)"], distribution=f"{len(calls)} per-call 'Inference time' lines"
            )
    unstable = UNSTABLE.findall(text)
    if unstable:
        result["unstable"] = unstable[-1]
    spreads = SPREAD.findall(text)
    if spreads:
        result["spread"] = {"cv": float(spreads[-1][0]) / 100, "blocks": int(spreads[-1][1])}
    elif len(calls) >= 4:  # msame's per-call lines
        result["spread"] = block_spread(calls)
    if tool == "onnxruntime":
        match = RUNNER_BATCH.search(text)
        if match:
            result["batch_size"], result["devices"] = int(match.group(1)), int(match.group(2))
    return result


def _parse_ais_text(path, text):
    lines = [line for line in text.splitlines() if "NPU_compute_time (ms):" in line]
    if not lines:
        raise InputError(f"{path}: truncated ais_bench log: no 'NPU_compute_time (ms): ... mean = X,' line")
    devices = [parse_stats(line) for line in lines]
    if any("mean" not in d for d in devices):
        raise InputError(f"{path}: truncated ais_bench log: no 'NPU_compute_time (ms): ... mean = X,' line")
    latencies = [_latency(path, str(d["mean"])) for d in devices]
    batch = None
    match = AIS_BATCH.search(text)
    if match:
        batch = _whole(float(match.group(1)))
    else:
        throughput = AIS_THROUGHPUT.search(text)
        if throughput:  # 2022-06/07 wording carries no batch: recover it from its own formula
            batch = _whole(float(throughput.group(1)) * latencies[0] / 1000)
    result = {
        "tool": "ais_bench",
        "latency_ms": sum(latencies) / len(latencies),
        "batch_size": batch or _batch_from_names(text),
        "devices": len(set(AIS_DEVICES.findall(text))) or None,
        "p50_ms": None,
        "p99_ms": None,
    }
    pooled = BLOCK.findall(text)
    if pooled:  # a card run of msame_driver.py: every device's per-call list pooled
        stats = parse_stats(pooled[-1])
        result.update(_spread(stats), latency_ms=_latency(path, str(stats["mean"])), distribution="pooled over the devices")
    elif len(devices) == 1:
        result.update(_spread(devices[0]), distribution="ais_bench summary")
    return result


def _parse_ais_json(path, text):
    try:
        summary = json.loads(text)
        times = summary["NPU_compute_time"]
        mean = times["mean"]
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError):
        raise InputError(
            f"{path}: JSON but not an ais_bench summary (expected NPU_compute_time.mean); known formats: {'; '.join(KNOWN_FORMATS)}"
        ) from None
    latency = _latency(path, str(mean))
    batch = None
    argv = summary.get("args")
    argv_text = " ".join(map(str, argv)) if isinstance(argv, list) else str(argv or "")
    match = re.search(r"--batchsize[= ](\d+)", argv_text)
    if match:
        batch = int(match.group(1))
    elif isinstance(summary.get("batchsize"), (int, float)):
        batch = _whole(summary["batchsize"])
    elif isinstance(summary.get("throughput"), (int, float)):
        batch = _whole(summary["throughput"] * latency / 1000)
    ours = str(summary.get("tool", "")).startswith("onnxruntime")  # this project's runner writes the same layout
    return {
        "tool": "onnxruntime" if ours else "ais_bench",
        "latency_ms": latency,
        "batch_size": batch or _batch_from_names(argv_text),
        "devices": _count(summary.get("workers")) if ours else None,
        "p50_ms": _number(times.get("median")),
        "p99_ms": _number(times.get("percentile(99%)")),
        "distribution": "summary JSON",
    }


def _whole(value):
    """A whole number >= 1 rounded from a float read from a log, or None (Inf, NaN, nothing)."""
    return round(value) if math.isfinite(value) and 0.5 <= value < 2**53 else None


def _count(value):
    """A whole number >= 1 from a hand-edited or foreign file, or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _number(value):
    return float(value) if isinstance(value, (int, float)) else None


def _parse_trtexec(path, text):
    match = TRT8_GPU.search(text)
    spread = {"p50_ms": None, "p99_ms": None}
    if match:
        version = "8+"
        value = match.group(1)
        spread = _spread(parse_stats(match.group(0)))
    else:
        header = TRT7_HEADER.search(text)
        mean = TRT7_MEAN.search(text, header.end()) if header else None
        if not mean:
            raise InputError(f"{path}: truncated trtexec log: 'GPU Compute' but no mean line after it")
        version, value = "7", mean.group(1)
        block = text[header.end() :]
        median = TRT7_MEDIAN.search(block)
        stats = {"median": float(median.group(1))} if median else {}
        for percentile_value, quantile in TRT7_PERCENTILE.findall(block)[:1]:
            stats[f"p{float(quantile):g}"] = float(percentile_value)
        spread = _spread(stats)
    shapes = TRT_SHAPES.search(text)
    batch = int(shapes.group(1)) if shapes else _batch_from_names(text)
    return {
        "tool": "trtexec",
        "version": version,
        "latency_ms": _latency(path, value),
        "batch_size": batch,
        "devices": None,
        **spread,
        "distribution": "GPU Compute" if spread["p50_ms"] is not None else None,
    }


def throughput(path, batch_size=None, chips=None):
    """The parsed log with batch_size, chips and fps filled in."""
    result = dict(parse_log(path), log=str(path))
    result["batch_size"] = batch_size or result["batch_size"]
    if not result["batch_size"]:
        raise InputError(f"{path}: no batch size in the log (no model name like GAN_bs16.om): pass --batch_size")
    if result["batch_size"] <= 0:
        raise InputError(f"{path}: batch size {result['batch_size']} is not positive")
    result["chips"], result["chips_rule"] = card_chips(result["tool"], result.pop("devices", None), result.pop("soc", None), chips)
    try:
        result["fps"] = 1000.0 * result["batch_size"] * result["chips"] / result["latency_ms"]
    except OverflowError:
        result["fps"] = math.inf
    if not math.isfinite(result["fps"]):  # a latency of 1e-320 ms is positive, and no figure (found by fuzzing)
        raise InputError(
            f"{path}: latency {result['latency_ms']:g} ms at batch {result['batch_size']} gives no finite throughput: not a real log"
        )
    return result


def main(args):
    if args.save_json:
        check_output_file(args.save_json, "--save_json")
        refuse_overlap([("--log", log) for log in args.log + args.baseline], [("--save_json", args.save_json)])
    rows = [throughput(log, args.batch_size, args.chips) for log in args.log]
    baselines = {}
    for log in args.baseline:
        base = throughput(log, args.baseline_batch_size, args.baseline_chips)
        baselines[base["batch_size"]] = base
    for row in rows:
        base = baselines.get(row["batch_size"])
        if base:
            row["baseline_log"], row["baseline_fps"] = base["log"], base["fps"]
            row["ratio"] = row["fps"] / base["fps"]
            row["verdict"] = "PASS" if row["ratio"] >= 0.5 else "FAIL"
        elif baselines:
            row["verdict"] = f"no baseline at batch {row['batch_size']}"
    if args.save_json:
        from gan.records import save_step

        save_step(args.save_json, "perf", {"logs": rows, "baselines": list(baselines.values())})
    if args.json:
        print(json.dumps({"logs": rows, "baselines": list(baselines.values())}, indent=2))
        return 0
    print(f"{'log':<28} {'tool':<11} {'batch':>5} {'chips':>5} {'latency_ms':>11} {'p50_ms':>10} {'p99_ms':>10} {'fps':>14}")
    for row in rows + list(baselines.values()):
        print(
            f"{Path(row['log']).name[:28]:<28} {row['tool']:<11} {row['batch_size']:>5} {row['chips']:>5} "
            f"{row['latency_ms']:>11.6g} {_ms(row['p50_ms']):>10} {_ms(row['p99_ms']):>10} {row['fps']:>14.3f}"
        )
    for row in rows + list(baselines.values()):
        print(f"{Path(row['log']).name}: chips {row['chips']}: {row['chips_rule']}")
    for row in rows + list(baselines.values()):
        if row.get("spread") is not None or row["tool"] == "onnxruntime":
            print(f"{Path(row['log']).name}: spread {describe_spread(row.get('spread'))}")
    for row in rows:
        if "ratio" in row:
            print(
                f"{Path(row['log']).name}: {row['fps']:.3f} / {row['baseline_fps']:.3f} = {row['ratio']:.3f} x baseline "
                f"at batch {row['batch_size']}: {row['verdict']} (ModelZoo rule: >= 0.5)"
            )
        elif "verdict" in row:
            print(f"{Path(row['log']).name}: {row['verdict']}")
    failed = [row for row in rows if row.get("verdict") == "FAIL"]
    if failed:  # the verdict's one line on stderr, as every failure ends
        raise InputError(f"{failed[0]['log']}: FAIL: {len(failed)} of {len(rows)} log(s) below 0.5 x the baseline (the ModelZoo rule)")
    return 0


def _ms(value):
    return "-" if value is None else f"{value:.6g}"


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
