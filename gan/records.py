"""Files this project writes and reads back: one validating reader per format.

Run manifests, atc records, each step's --save_json (export, testdata, compare, eval, perf, sweep), the
runner's summary and run_pipeline.sh's steps.tsv are read only through here. A record must be a regular
file (not a symbolic link, folder, pipe or device; a pipe is never waited on), at most MAX_RECORD_BYTES,
valid UTF-8 JSON (or TSV) of the expected shape, field by field: types checked, numbers finite, the
values a field can take. Any deviation is one InputError naming the file and the field, never another
exception. Writers and readers share the shapes below, so a new field is added in one place. Needs only
the standard library.
"""

import json
import math
import re
from datetime import datetime
from pathlib import Path

from gan.cli import InputError
from gan.files import read_text, write_bytes_atomic

# A summary holds every per-call time (a million calls: about 20 MB); nothing this project writes is larger.
MAX_RECORD_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------------
# Shapes: a dict is an object with these fields (a name ending in "?" may be absent), a type is that type,
# the helpers below say the rest.


class Number:
    """A finite int or float (not a bool), optionally within bounds."""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def describe(self):
        bounds = f" >= {self.low:g}" if self.low is not None else ""
        return "a finite number" + bounds

    def ok(self, value):
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        )


class Count(Number):
    """A whole number (not a bool) >= low."""

    def __init__(self, low=0):
        super().__init__(low)

    def describe(self):
        return f"a whole number >= {self.low}"

    def ok(self, value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= self.low


class Text:
    """A string, optionally matching a pattern."""

    def __init__(self, pattern=None, meaning="a string"):
        self.pattern, self.meaning = (re.compile(pattern) if pattern else None), meaning

    def describe(self):
        return self.meaning

    def ok(self, value):
        return isinstance(value, str) and (self.pattern is None or bool(self.pattern.fullmatch(value)))


class Instant(Text):
    """An ISO 8601 time with its offset from UTC (2026-12-02T10:00:00.000+01:00), a real date and time: what a record
    says of when something happened, compared as instants (never as text, never without its offset)."""

    def __init__(self):
        super().__init__(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)", "an ISO 8601 time with its UTC offset")

    def ok(self, value):
        return super().ok(value) and parse_instant(value) is not None


def parse_instant(text):
    """The aware datetime of an Instant's text, or None (an impossible date such as 02-30, no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None and moment.utcoffset() is not None else None


class OneOf:
    def __init__(self, *values):
        self.values = values

    def describe(self):
        return "one of " + ", ".join(json.dumps(v) for v in self.values)

    def ok(self, value):
        return any(type(value) is type(v) and value == v for v in self.values)


class Nullable:
    def __init__(self, spec):
        self.spec = spec


class ListOf:
    def __init__(self, spec, min_len=0):
        self.spec, self.min_len = spec, min_len


class MapOf:
    """An object with any string keys (matching `keys`), every value of one shape."""

    def __init__(self, spec, keys=None, min_len=0):
        self.spec, self.keys, self.min_len = spec, keys, min_len


SHA256 = Text(r"[0-9a-f]{64}", "a sha256 (64 hexadecimal digits)")
TIMESTAMP = Instant()
FILE_DIGEST = {"size": Count(), "sha256": SHA256}
PLAIN_NAME = Text(r"[^/\x00]+", "a file name (no '/')")


def _describe(value):
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


class _Mismatch(Exception):
    def __init__(self, where, expected, value):
        super().__init__(f"{where or 'the whole file'} should be {expected}, found {_describe(value)}")


def check_shape(value, spec, where=""):
    """Raise _Mismatch at the first place `value` departs from `spec`."""
    if isinstance(spec, Nullable):
        if value is not None:
            check_shape(value, spec.spec, where)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _Mismatch(where, "an object", value)
        for key, sub in spec.items():
            name = key.rstrip("?")
            if name in value:
                check_shape(value[name], sub, f"{where}.{name}" if where else name)
            elif not key.endswith("?"):
                raise _Mismatch(f"{where}.{name}" if where else name, "present", "nothing")
    elif isinstance(spec, ListOf):
        if not isinstance(value, list) or len(value) < spec.min_len:
            raise _Mismatch(where, f"a list of at least {spec.min_len} item(s)" if spec.min_len else "a list", value)
        for k, item in enumerate(value):
            check_shape(item, spec.spec, f"{where}[{k}]")
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict) or len(value) < spec.min_len:
            raise _Mismatch(where, f"an object of at least {spec.min_len} entries" if spec.min_len else "an object", value)
        for key, item in value.items():
            if (isinstance(key, str) and "\x00" in key) or (spec.keys is not None and not spec.keys.ok(key)):
                raise _Mismatch(f"{where} key", spec.keys.describe() if spec.keys else "text without NUL bytes", key)
            check_shape(item, spec.spec, f"{where}[{json.dumps(key)}]")
    elif isinstance(spec, (Number, Text, OneOf)):
        if not spec.ok(value):
            raise _Mismatch(where, spec.describe(), value)
    elif spec is bool:
        if not isinstance(value, bool):
            raise _Mismatch(where, "true or false", value)
    elif spec is str:
        if not isinstance(value, str):
            raise _Mismatch(where, "a string", value)
    elif spec is object:
        pass
    else:
        raise TypeError(f"unknown shape {spec!r}")
    if isinstance(value, str) and "\x00" in value:  # a path with a NUL byte reaches no file: refused here, for every reader
        raise _Mismatch(where, "text without NUL bytes", value)


def read_json(path, spec, what):
    """A JSON record of this project, checked against `spec`: the parsed value, or one InputError naming the file."""
    text = read_text(path, what, MAX_RECORD_BYTES, follow_links=False)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise InputError(f"{path}: not a {what}: not JSON ({reason})") from None
    try:
        check_shape(value, spec)
    except _Mismatch as err:
        raise InputError(f"{path}: not a valid {what}: {err}") from None
    return value


def write_json(path, value, spec):
    """Write a record atomically after checking it against the shape its reader will check (a writer's bug raises)."""
    check_shape(value, spec)  # a mismatch here is this project's bug: let it raise
    write_bytes_atomic(path, (json.dumps(value, indent=1) + "\n").encode())


# ---------------------------------------------------------------------------------------------------------
# The records.

MANIFEST_FORMAT = "gan-offline-run/2"
MANIFEST = {
    "format": OneOf(MANIFEST_FORMAT),
    "status": OneOf("running", "complete", "failed"),
    "run": PLAIN_NAME,
    "tool": str,
    "pid": Count(1),
    "host": str,
    "started": TIMESTAMP,
    "inputs?": Count(),
    "finished?": TIMESTAMP,
    "error?": str,
    "outputs?": MapOf(FILE_DIGEST, keys=PLAIN_NAME),
    "beside?": MapOf(FILE_DIGEST, keys=PLAIN_NAME),
    "output_count?": Count(),
    "nonfinite_outputs?": ListOf(str),
}

ATC_RECORD_FORMAT = "gan-atc-record/1"
ERROR_STATS = {name: Nullable(Number(0)) for name in ("max", "mean", "p50", "p90", "p99")}
ELEMENTWISE = {  # gan/precision.ErrorStatistics.summary(), with GAN_compare's verdict (None: not checked)
    "atol": Number(0),
    "rtol": Number(0),
    "elements": Count(1),
    "failing": Count(),
    "failing_share": Number(0, 1),
    "nan": Count(),
    "inf": Count(),
    "needed_atol": Nullable(Number(0)),
    "needed_rtol": Nullable(Number(0)),
    "quantiles_every": Count(1),
    "abs": ERROR_STATS,
    "rel": ERROR_STATS,
    "verdict": Nullable(OneOf("PASS", "FAIL")),
}

ATC_RECORD = {
    "format": OneOf(ATC_RECORD_FORMAT),
    "command": ListOf(str, 1),
    "input": str,
    "features": Count(1),
    "batch?": Count(1),
    "dynamic_batch_size?": ListOf(Count(1), 2),
    "soc_version": str,
    "precision_mode": str,
    "om": {"name": PLAIN_NAME, **FILE_DIGEST},
    "keep_dtype?": {"file": str, "sha256": SHA256, "operators": ListOf(str, 1)},  # atc_convert.py --keep_dtype
}

STATS = {"min": Number(), "max": Number(), "mean": Number(0), "median": Number(), "percentile(99%)": Number(), "count?": Count()}
CPU = {"model": str, "isa": ListOf(str), "cores": Count(1)}
SUMMARY = {
    "NPU_compute_time": {**STATS, "count": Count(1)},
    "throughput": Number(0),
    "tool": str,
    "batchsize": Number(0),
    "warmup?": Count(),
    "loop?": Count(1),
    "workers?": Count(1),
    "npu_compute_time_list?": ListOf(Number()),
    "cpu?": CPU,
    "threads?": str,
    "versions?": MapOf(str),
    "load?": {
        "cpu_wait_share": Nullable(Number(0, 1)),
        "loadavg": Nullable(ListOf(Number(0))),
        "loadavg_before?": Nullable(ListOf(Number(0))),
        "steal_share?": Nullable(Number(0, 1)),
        "others_cpu_share?": Nullable(Number(0, 1)),
    },
    "spread?": Nullable({"cv": Number(0), "blocks": Count(2)}),
    "unstable?": ListOf(str),
    "cold_start?": {"session_ms": Number(0), "first_inference_ms": Number(0), "first_inference_rows": Number(1), "threads?": Count(1)},
}

PICTURE = {"path": str, "sha256": SHA256}

STEP_RECORDS = {
    "export.json": {
        "input_file": str,
        "opset": Count(1),
        "fold": bool,
        "max_diff": Number(0),
        "models": MapOf(
            {
                "kind": str,
                "max_abs_by_batch": MapOf(Number(0), min_len=1),
                "check?": {
                    "images": Count(1),
                    "max_abs": Number(0),
                    "mean_abs": Number(0),
                    "cosine": Number(),
                    "preset": str,
                    "verdict": OneOf("PASS", "FAIL"),
                    "cpu": str,
                },
            },
            min_len=1,
        ),
        "cpu?": CPU,
        "versions?": MapOf(str),
    },
    "testdata.json": {
        "pth_path": str,
        "seed": Count(),
        "iters": Count(1),
        "batch_size": Count(1),
        "online_path": str,
        "offline_path": str,
        "jpg": bool,
    },
    "compare.json": {
        "reference": str,
        "reference_read": str,
        "offline": str,
        "offline_read": str,
        "tolerance": str,
        "limits": {"max_abs": Number(0), "mean_abs": Nullable(Number(0)), "cosine": Number()},
        "overall": {"batches": Count(1), "images": Count(1), "max_abs": Number(0), "mean_abs": Number(0), "cosine": Number()},
        "verdict": OneOf("PASS", "FAIL"),
        "picture": Nullable({**PICTURE, "batch": Count()}),
        "batches": ListOf({"batch": Count(), "images": Count(1), "max_abs": Number(0), "mean_abs": Number(0), "cosine": Number()}, 1),
        "elementwise?": ELEMENTWISE,
        "error_plot?": Nullable(PICTURE),
    },
    "eval.json": {
        "targets": {"confidence": Number(0), "inception_score": Number(0), "min_digit_share": Number(0)},
        "rows": ListOf(
            {
                "source": str,
                "images": Count(2),
                "confidence": Number(0),
                "inception_score": Number(0),
                "fid": Number(),
                "min_digit_share": Number(0),
                "digit_shares": ListOf(Number(0), 10),
                "targets_met": bool,
            },
            1,
        ),
    },
    "perf.json": {
        "logs": ListOf(
            {
                "log": str,
                "tool": str,
                "batch_size": Count(1),
                "chips": Count(1),
                "chips_rule": str,
                "latency_ms": Number(0),
                "p50_ms": Nullable(Number(0)),
                "p99_ms": Nullable(Number(0)),
                "fps": Number(0),
                "spread?": Nullable({"cv": Number(0), "blocks": Count(2)}),
            },
            1,
        ),
        "baselines": ListOf(object),
    },
    "sweep.json": {
        "model": str,
        "device": str,
        "rows": ListOf(
            {
                "batch_size": Count(1),
                "images_per_s_per_card": Number(0),
                "latency_ms": Number(0),
                "p50_ms": Nullable(Number(0)),
                "p99_ms": Nullable(Number(0)),
                "chips": Count(1),
                "chips_rule": str,
                "tool": str,
                "spread?": Nullable({"cv": Number(0), "blocks": Count(2)}),
                "unstable?": Nullable(str),
            },
            1,
        ),
        "best_batch": Count(1),
        "best_separated?": Nullable(bool),
        "best_images_per_s_per_card": Number(0),
        "plot": Nullable(PICTURE),
        "cpu?": CPU,
    },
}


REGRESSION_VERDICT = OneOf("improved", "same", "worse", "not comparable", "differs")
STEP_RECORDS["regression.json"] = {
    "format": OneOf("gan-regression/1"),
    "baseline": str,
    "candidate": str,
    "factor": Number(1),
    "alpha": Number(0),
    "error_factor": Number(1),
    "resamples": Count(1),
    "rows": ListOf(
        {
            "section": OneOf("environment", "outputs", "precision", "image quality", "speed"),
            "figure": str,
            "baseline": str,
            "candidate": str,
            "change": str,
            "verdict": REGRESSION_VERDICT,
            "reason": str,
            "interval?": ListOf(Number(), 2),
            "p_slower?": Number(0),
            "p_faster?": Number(0),
            "calls?": ListOf(Count(1), 2),
            "drift?": ListOf(Number(0), 2),
        },
        1,
    ),
    "worse": Count(),
    "verdict": OneOf("worse", "nothing worse"),
}


def read_regression(path):
    """GAN_regression.py's --save_json, whatever the file is called."""
    return read_json(path, STEP_RECORDS["regression.json"], "regression record of GAN_regression.py")


def save_step(path, step, value):
    """A step's --save_json (step: "export", "compare", ...), checked against the shape the report reads."""
    write_json(path, value, STEP_RECORDS[f"{step}.json"])


def read_manifest(path):
    return read_json(path, MANIFEST, "run manifest")


def read_atc_record(path):
    return read_json(path, ATC_RECORD, "record of atc_convert.sh")


def read_summary(path):
    return read_json(path, SUMMARY, "summary of the runner")


def read_step(path):
    """A step's --save_json, by its file name (export.json, compare.json, ...)."""
    return read_json(path, STEP_RECORDS[Path(path).name], f"{Path(path).name} of its step")


# ---------------------------------------------------------------------------------------------------------
# steps.tsv: what run_pipeline.sh ran, one tab-separated line per step.

STEPS_HEADER = ["step", "status", "seconds", "peak_mb", "command"]
STEP_STATUS = re.compile(r"ok|failed \(exit \d+\)|(?:interrupted|killed) \(SIG[A-Z0-9]+\)")


def read_steps(path):
    """[{step, status, seconds (float), peak_mb (int or None), command}] of a steps.tsv."""
    what = "steps.tsv of run_pipeline.sh"
    lines = read_text(path, what, MAX_RECORD_BYTES, follow_links=False).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].split("\t") != STEPS_HEADER:
        raise InputError(f"{path}: not a steps.tsv of run_pipeline.sh: the first line should be {chr(9).join(STEPS_HEADER)!r}")
    steps = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t", len(STEPS_HEADER) - 1)
        if len(fields) != len(STEPS_HEADER):
            raise InputError(f"{path}: line {number}: {len(fields)} fields, expected {len(STEPS_HEADER)}")
        step, status, seconds, peak, command = fields
        if not re.fullmatch(r"[a-z0-9_]+", step) or not STEP_STATUS.fullmatch(status):
            raise InputError(f"{path}: line {number}: not a step name and status ({step[:20]!r}, {status[:30]!r})")
        if not re.fullmatch(r"\d+(\.\d+)?", seconds) or not re.fullmatch(r"\d+|-", peak):
            raise InputError(f"{path}: line {number}: seconds {seconds[:20]!r} and peak_mb {peak[:20]!r} should be numbers")
        steps.append(
            {"step": step, "status": status, "seconds": float(seconds), "peak_mb": None if peak == "-" else int(peak), "command": command}
        )
    return steps
