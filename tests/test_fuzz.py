"""Every reader of a file format, fuzzed: for any input it returns a valid result or raises the project's one-line
InputError, never another exception, never a hang.

Formats: the logs of every tool perf_calc.py knows, offline outputs (TXT, BIN, NPY), .bin inputs, run manifests (and
whole run folders), atc records, each step's JSON, steps.tsv, MNIST idx files, ONNX models' external-data
references, run folder names. Inputs are random and mutated real files. A few seconds each here; a longer campaign:
GAN_FUZZ_EXAMPLES=20000 python -m pytest -q tests/test_fuzz.py (the numbers of the last one are in the issue's note).
"""

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_perf_calc import AIS_BENCH, GUIDE_MSAME, GUIDE_TRT7, MSAME_FILE_MODE, TRT85

from gan.cli import InputError

EXAMPLES = int(os.environ.get("GAN_FUZZ_EXAMPLES", "150"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=EXAMPLES <= 150)


def in_file(data, name="f"):
    """Write `data` (bytes or text) to a fresh file named `name`; returns (folder context, path)."""
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return folder, path


def mutated(base):
    """Strategy: `base` (bytes) with random spans replaced, deleted or duplicated."""

    @st.composite
    def strategy(draw):
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 6))):
            if not data:
                break
            start = draw(st.integers(0, len(data) - 1))
            end = draw(st.integers(start, min(len(data), start + 40)))
            action = draw(st.sampled_from(["replace", "delete", "duplicate", "digit"]))
            if action == "replace":
                data[start:end] = draw(st.binary(max_size=40))
            elif action == "delete":
                del data[start:end]
            elif action == "duplicate":
                data[start:start] = data[start:end]
            else:
                data[start:end] = draw(st.sampled_from([b"0", b"-1", b"nan", b"inf", b"1e308", b"1e-320", b"", b" ", b"\n"]))
        return bytes(data)

    return strategy()


# ---------------------------------------------------------------------------------------------------------
# Logs of every tool perf_calc.py reads.

RUNNER_LOG = (
    "[INFO] ONNX Runtime runner with msame's interface\n[INFO] model GAN.onnx, batch size 64, 100 input file(s), 1 worker(s)\n"
    "Inference time: 1.02ms\nInference time: 0.98ms\nInference average time : 1.000000 ms\n"
    "[INFO] compute_time (ms): min = 0.98, max = 1.02, mean = 1.0, median = 1.0, percentile(90%) = 1.01, percentile(99%) = 1.02\n"
    "[INFO] throughput 1000*batchsize(64)/compute_time.mean(1.0): 64000.000\n"
)
CARD_LOG = (
    "[INFO] msame on GAN_bs16.om (chip Ascend310P3, from GAN_bs16.atc.json), 8 input file(s), devices 0,1\n"
    "[device 0] Inference time: 0.5ms\n[device 1] Inference time: 0.6ms\n[INFO] card summary: 2 devices\n"
    "Inference average time : 0.550000 ms\n"
)
AIS_JSON = json.dumps(
    {
        "NPU_compute_time": {"min": 0.6, "max": 0.9, "mean": 0.64, "median": 0.63, "percentile(99%)": 0.8, "count": 10},
        "throughput": 100000.0,
        "args": ["--batchsize", "64"],
    }
)
LOGS = [GUIDE_MSAME.format("0.43"), GUIDE_TRT7.format("0.0826078"), TRT85, AIS_BENCH, MSAME_FILE_MODE, RUNNER_LOG, CARD_LOG, AIS_JSON]
LOG_LINES = [line for log in LOGS for line in log.splitlines()]


def check_log(data, batch_size=None):
    from perf_calc import throughput

    folder, path = in_file(data, "GAN_bs16.log")
    with folder:
        try:
            row = throughput(path, batch_size=batch_size)
        except InputError:
            return
    assert row["tool"] in ("msame", "ais_bench", "trtexec", "onnxruntime")
    assert math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0 and row["batch_size"] > 0 and row["chips"] >= 1
    assert math.isfinite(row["fps"]) and row["fps"] > 0 and row["chips_rule"]
    for key in ("p50_ms", "p99_ms"):
        assert row[key] is None or isinstance(row[key], float)


@fuzz
@given(st.one_of(*(mutated(log.encode()) for log in LOGS)))
def test_perf_calc_on_mutated_logs(data):
    check_log(data)


@fuzz
@given(st.lists(st.one_of(st.sampled_from(LOG_LINES), st.text(max_size=60)), max_size=30), st.sampled_from([None, 1, 64]))
def test_perf_calc_on_shuffled_log_lines(lines, batch_size):
    check_log("\n".join(lines) + "\n", batch_size)


@fuzz
@given(st.one_of(st.binary(max_size=2000), st.integers(1, 200000).map(lambda n: '{"NPU_compute_time": ' + "[" * n + "]" * n + "}")))
def test_perf_calc_on_random_bytes(data):
    check_log(data)


# ---------------------------------------------------------------------------------------------------------
# Offline outputs and inputs.


@fuzz
@given(st.binary(max_size=8 * 784), st.sampled_from(["0_output_0.bin", "0_0.npy", "0_output_0.txt"]))
def test_read_output_on_random_bytes(data, name):
    from gan.files import read_output

    check_output(data, name, read_output)


def check_output(data, name, reader):
    folder, path = in_file(data, name)
    with folder:
        try:
            images = reader(path)
        except InputError:
            return
    assert images.ndim == 4 and images.shape[1:] == (1, 28, 28) and len(images) >= 1 and np.isfinite(images).all()


TXT = ("0.5 " * 28 + "\n") * 28


@fuzz
@given(mutated(TXT.encode()))
def test_read_output_on_mutated_txt(data):
    from gan.files import read_output

    check_output(data, "3_output_0.txt", read_output)


def _npy_bytes():
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 28, 28), np.float32))
    return buffer.getvalue()


@fuzz
@given(mutated(_npy_bytes()))
def test_read_output_on_mutated_npy(data):
    from gan.files import read_output

    check_output(data, "3_0.npy", read_output)


@fuzz
@given(st.binary(max_size=4000), st.sampled_from([None, 4]))
def test_bin_inputs(data, fixed_batch):
    from gan.runs import check_input

    folder, path = in_file(data, "0.bin")
    with folder:
        try:
            rows = check_input(path, 100, fixed_batch)
        except InputError:
            return
    assert rows * 400 == len(data) and rows >= 1 and (fixed_batch is None or rows == fixed_batch)


# ---------------------------------------------------------------------------------------------------------
# Records this project writes and reads back.

GOOD_MANIFEST = {
    "format": "gan-offline-run/2",
    "status": "complete",
    "run": "20261201_101500_000001",
    "tool": "onnxruntime",
    "pid": 4242,
    "host": "h",
    "started": "2026-12-01T10:15:00.000+00:00",
    "inputs": 1,
    "finished": "2026-12-01T10:15:01.000+00:00",
    "outputs": {"0_output_0.bin": {"size": 3136, "sha256": "0" * 64}},
    "output_count": 1,
}
GOOD_RECORD = {
    "format": "gan-atc-record/1",
    "command": ["atc", "--model=GAN.onnx"],
    "input": "Z",
    "features": 100,
    "dynamic_batch_size": [1, 4],
    "soc_version": "Ascend310",
    "precision_mode": "force_fp16",
    "om": {"name": "GAN_dyn.om", "size": 10, "sha256": "a" * 64},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


@st.composite
def edited(draw, base):
    """`base` with one field (at any depth) replaced by a random JSON value or removed."""
    value = json.loads(json.dumps(base))
    node, path = value, []
    while isinstance(node, dict) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node)))
        path.append(key)
        if not isinstance(node[key], dict):
            break
        node = node[key]
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if path:
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        else:
            del parent[path[-1]]
    return json.dumps(value, allow_nan=True).encode()


def record_strategy(base):
    return st.one_of(
        edited(base), mutated(json.dumps(base).encode()), json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)
    )


@fuzz
@given(record_strategy(GOOD_MANIFEST))
def test_read_manifest(data):
    from gan.records import read_manifest

    check_record(data, read_manifest, {"format", "status", "run", "started"})


@fuzz
@given(record_strategy(GOOD_RECORD))
def test_read_atc_record(data):
    from gan.records import read_atc_record

    check_record(data, read_atc_record, {"om", "command", "soc_version"})


def check_record(data, reader, required, name="record.json"):
    folder, path = in_file(data, name)
    with folder:
        try:
            value = reader(path)
        except InputError as err:
            assert "\n" not in str(err)
            return
    assert isinstance(value, dict) and required <= set(value)


@fuzz
@given(record_strategy(GOOD_MANIFEST), st.binary(max_size=3200))
def test_open_run_on_a_hand_edited_run(manifest, output):
    """A whole run folder: manifest and output random; open_run gives a checked run or one line."""
    from gan.runs import open_run

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "out"
        run_dir = root / "20261201_101500_000001"
        run_dir.mkdir(parents=True)
        (run_dir / "0_output_0.bin").write_bytes(output)
        (root / ".20261201_101500_000001.manifest.json").write_bytes(manifest)
        try:
            opened = open_run(root)
        except InputError as err:
            assert "\n" not in str(err)
            return
        assert opened.manifest["status"] == "complete" and opened.outputs == {0: run_dir / "0_output_0.bin"}


STEP_EXAMPLES = {
    "compare.json": {
        "reference": "images",
        "reference_read": "images (online)",
        "offline": "out/r",
        "offline_read": "out/r (complete run)",
        "tolerance": "fp32",
        "limits": {"max_abs": 1e-4, "mean_abs": None, "cosine": 0.99999},
        "overall": {"batches": 1, "images": 4, "max_abs": 1e-6, "mean_abs": 1e-7, "cosine": 1.0},
        "verdict": "PASS",
        "picture": {"path": "compare_first_batch.png", "sha256": "b" * 64, "batch": 0},
        "batches": [{"batch": 0, "images": 4, "max_abs": 1e-6, "mean_abs": 1e-7, "cosine": 1.0}],
    },
    "perf.json": {
        "logs": [
            {
                "log": "a.log",
                "tool": "msame",
                "batch_size": 16,
                "chips": 4,
                "chips_rule": "x4",
                "latency_ms": 0.5,
                "p50_ms": None,
                "p99_ms": 0.6,
                "fps": 128000.0,
            }
        ],
        "baselines": [],
    },
    "testdata.json": {"pth_path": "g.pth", "seed": 0, "iters": 1, "batch_size": 4, "online_path": "i", "offline_path": "v", "jpg": True},
    "regression.json": {
        "format": "gan-regression/1",
        "baseline": "runs/base",
        "candidate": "runs/new",
        "factor": 1.1,
        "alpha": 0.01,
        "error_factor": 2.0,
        "resamples": 200,
        "rows": [
            {
                "section": "environment",
                "figure": "CPU",
                "baseline": "AMD EPYC",
                "candidate": "AMD EPYC",
                "change": "",
                "verdict": "same",
                "reason": "",
            },
            {
                "section": "speed",
                "figure": "p50 latency (ms), batch 64",
                "baseline": "2.4",
                "candidate": "2.5",
                "change": "x1.04",
                "verdict": "same",
                "reason": "within x1.1",
                "p_slower": 0.2,
                "p_faster": 0.8,
                "calls": [100, 100],
                "drift": [1.05, 1.04],
            },
        ],
        "worse": 0,
        "verdict": "nothing worse",
    },
}


@fuzz
@given(st.sampled_from(sorted(STEP_EXAMPLES)).flatmap(lambda name: st.tuples(st.just(name), record_strategy(STEP_EXAMPLES[name]))))
def test_read_step_json(case):
    from gan.records import read_step

    name, data = case
    check_record(data, read_step, set(), name)


STEPS_TSV = "step\tstatus\tseconds\tpeak_mb\tcommand\nexport\tok\t1.50\t700\tpython3 GAN_pth2onnx.py\noffline\tinterrupted (SIGTERM)\t0.2\t-\tbash x\n"


@fuzz
@given(st.one_of(mutated(STEPS_TSV.encode()), st.binary(max_size=300)))
def test_read_steps_tsv(data):
    from gan.records import read_steps

    folder, path = in_file(data, "steps.tsv")
    with folder:
        try:
            steps = read_steps(path)
        except InputError:
            return
    for step in steps:
        assert math.isfinite(step["seconds"]) and step["seconds"] >= 0 and (step["peak_mb"] is None or step["peak_mb"] >= 0)


# ---------------------------------------------------------------------------------------------------------
# MNIST idx files, ONNX models' external data, run folder names.

IDX = (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big") + bytes(2 * 784)


@fuzz
@given(st.one_of(mutated(IDX), st.binary(max_size=100)))
def test_read_idx_images(data):
    from GAN_eval import read_idx_images

    folder, path = in_file(data, "train-images-idx3-ubyte")
    with folder:
        try:
            images = read_idx_images(path)
        except InputError:
            return
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)


@pytest.fixture(scope="module")
def model_bytes(onnx_model):
    return Path(onnx_model).read_bytes()[:4000]  # the graph's head: names, shapes, the start of the weights


@fuzz
@given(data=st.data())
def test_read_model_on_mutated_onnx(model_bytes, data):
    from gan.onnx_models import read_model

    content = data.draw(st.one_of(mutated(model_bytes), st.binary(max_size=300)))
    folder, path = in_file(content, "m.onnx")
    with folder:
        try:
            model = read_model(path)
        except InputError as err:
            assert "\n" not in str(err)
            return
    assert model.content == content


@fuzz
@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"\d{5,8}_\d{1,2}_\d{1,2}_\d{1,2}_\d{1,6}", fullmatch=True),
        st.from_regex(r"\d{8}_\d{6}(_\d{1,6})?", fullmatch=True),
        st.from_regex(r"\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d", fullmatch=True),
    )
)
def test_run_folder_names(name):
    from gan.runs import _name_times

    span = _name_times(name)
    assert span is None or span[0] <= span[1]


# ---------------------------------------------------------------------------------------------------------
# What atc_convert reads before atc: the model's structure (its own protobuf reader) and a --keep_dtype file.


def _small_model_bytes():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["Z", "W"], ["y"], name="/model/model.0/Gemm"),
            helper.make_node("Tanh", ["y"], ["generateimg"], name="t"),
        ],
        "g",
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("generateimg", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 2], [0.0] * 8)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


@fuzz
@given(st.one_of(mutated(_small_model_bytes()), st.binary(max_size=300)), st.sampled_from(["Ascend310", "Ascend310P3"]))
def test_atc_check_on_mutated_models(content, soc_version):
    """For any bytes: a list of problems (text), never an exception; the intact model has none."""
    from gan.atc_onnx import atc_problems

    problems = atc_problems(content, "5.0.4", soc_version, [1, 16], None)
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if content == _small_model_bytes():
        assert problems == []


@fuzz
@given(st.one_of(mutated(b"/model/model.0/Gemm\nOpType::Tanh\n"), st.binary(max_size=200)))
def test_read_keep_dtype(data):
    """A --keep_dtype file reads as names of the model's operators or OpType::<type>, or is refused in one line."""
    import re

    from atc_convert import read_keep_dtype

    folder, path = in_file(data, "keep_dtype.cfg")
    with folder:
        try:
            names = read_keep_dtype(path, _small_model_bytes(), "m.onnx")
        except InputError as err:
            assert "\n" not in str(err)
            return
    assert names and all(n in ("/model/model.0/Gemm", "t") or re.fullmatch(r"OpType::[A-Za-z][A-Za-z0-9_]*", n) for n in names)
