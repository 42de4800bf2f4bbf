"""A log is read as one run of one tool, whatever its encoding, or refused: the issue's cases and their classes.

perf_calc.py reads the runner's, msame's, ais_bench's and trtexec's logs. The same log saved with CRLF line ends
or a UTF-8 BOM gives the same figure; a log holding two runs (appended with tee -a, pasted together, a line added
by hand) or a figure contradicting the rest of its log is refused in one line. And upstream's own parse (the
ModelZoo sample's `grep "Inference average time : " | awk '{print $5}'`) finds exactly one figure in every log
this project writes, single-device, card and .om driver: the figure perf_calc computes from.
"""

import json
import re
import subprocess

import pytest
from test_ascend_tools import env_with, msame_run
from test_perf_calc import AIS_BENCH, GUIDE_MSAME, MSAME_FILE_MODE, TRT85

from conftest import assert_clean_error, run_script
from perf_calc import throughput


@pytest.fixture(scope="module")
def runner_logs(onnx_model, testdata, tmp_path_factory):
    """{single, card}: the runner's own logs of 3 batches of 4, one worker and two."""
    _, vectors = testdata
    root = tmp_path_factory.mktemp("runner_logs")
    logs = {}
    for name, devices in (("single", "0"), ("card", "0,1")):
        result = run_script(
            "run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(root / name), "--device", devices
        )
        logs[name] = root / f"GAN_bs4_{name}.log"
        logs[name].write_text(result.stdout)
    return logs


def perf(path, *flags):
    return json.loads(run_script("perf_calc.py", "--log", str(path), "--json", *flags).stdout)["logs"][0]


@pytest.mark.parametrize("kind", ["single", "card"])
@pytest.mark.parametrize("encoding", ["crlf", "bom", "bom+crlf", "cr"])
def test_line_ends_and_a_bom_change_no_figure(runner_logs, tmp_path, kind, encoding):
    text = runner_logs[kind].read_text()
    plain = perf(runner_logs[kind])
    data = text.replace("\n", "\r\n" if "crlf" in encoding else "\r" if encoding == "cr" else "\n").encode()
    if "bom" in encoding:
        data = b"\xef\xbb\xbf" + data
    (tmp_path / "saved.log").write_bytes(data)
    saved = perf(tmp_path / "saved.log")
    assert (saved["tool"], saved["chips"], saved["batch_size"]) == ("onnxruntime", 2 if kind == "card" else 1, 4)
    assert saved["fps"] == plain["fps"] and saved["latency_ms"] == plain["latency_ms"]


@pytest.mark.parametrize("text", [GUIDE_MSAME.format("0.43"), MSAME_FILE_MODE, AIS_BENCH, TRT85], ids=["msame", "file", "ais", "trt"])
def test_the_tools_logs_read_the_same_saved_on_windows(tmp_path, text):
    (tmp_path / "unix.log").write_text(text)
    (tmp_path / "windows.log").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert throughput(tmp_path / "windows.log", 16)["fps"] == throughput(tmp_path / "unix.log", 16)["fps"]


@pytest.mark.parametrize(
    "data,message",
    [
        ("Inference average time : 0.43 ms\n".encode("utf-16"), "UTF-16"),
        ("Inference average time : 0.43 ms\n".encode("utf-16-be"), "UTF-16"),
        (b"Inference average time : 0.43 ms\n\x00\x00", "NUL byte"),
        (b"Inference average time : 0.43 ms \xff\xfe\n", "not UTF-8"),
    ],
)
def test_other_encodings_are_refused_in_one_line(tmp_path, data, message):
    (tmp_path / "odd.log").write_bytes(data)
    result = run_script("perf_calc.py", "--log", str(tmp_path / "odd.log"), "--batch_size", "1", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert_clean_error(result, "odd.log", message)


def test_a_log_appended_with_tee_a_is_refused(onnx_model, tmp_path):
    """A batch-8 run's log with a batch-16 run's appended: refused, not a figure mixing the two."""
    logs = {}
    for batch in (8, 16):
        vectors = tmp_path / f"v{batch}"
        vectors.mkdir()
        for i in range(2):
            (vectors / f"{i}.bin").write_bytes(bytes(4 * 100 * batch))
        model = tmp_path / f"GAN_bs{batch}.onnx"
        model.write_bytes(onnx_model.read_bytes())
        logs[batch] = run_script("run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "o")).stdout
    alone = {b: throughput(_saved(tmp_path, f"bs{b}.log", logs[b]))["fps"] for b in logs}
    assert alone[8] != alone[16]
    both = _saved(tmp_path, "GAN_bs8.log", logs[8] + logs[16])
    result = run_script("perf_calc.py", "--log", str(both), check=False)
    line = assert_clean_error(result, "GAN_bs8.log", "more than one run")
    assert result.returncode == 1 and result.stdout == "", line


@pytest.mark.parametrize(
    "added,message",
    [
        ("Inference average time : 0.43 ms\n", "'Inference average time' line appears 2 times"),
        ("[INFO] ONNX Runtime runner with msame's interface\n", "start line appears 2 times"),
        ("[INFO] throughput 1000*batchsize(4)/compute_time.mean(0.5): 9999.000\n", "not 1000 x 4 / 0.5"),
        ("[INFO] pid: 1 Execute sample success\n", "success line appears 2 times"),
        ("[INFO] compute_time (ms): min = 1, max = 1, mean = 1, median = 1, percentile(90%) = 1, percentile(99%) = 1\n", "block appears 2"),
    ],
)
def test_one_line_added_to_the_runners_log_is_refused(runner_logs, tmp_path, added, message):
    log = _saved(tmp_path, "edited.log", runner_logs["single"].read_text() + added)
    assert_clean_error(run_script("perf_calc.py", "--log", str(log), check=False), "edited.log", message)


def test_an_average_that_contradicts_its_own_lines_is_refused(runner_logs, tmp_path):
    text = runner_logs["single"].read_text()
    edited = re.sub(r"^Inference average time : [0-9.]+ ms$", "Inference average time : 9.000000 ms", text, flags=re.M)
    result = run_script("perf_calc.py", "--log", str(_saved(tmp_path, "e.log", edited)), check=False)
    assert_clean_error(result, "e.log", "compute_time block's mean")
    calls = "Inference time: 0.5ms\nInference time: 0.5ms\nInference time: 0.5ms\n"
    msame = _saved(tmp_path, "m.log", calls + "Inference average time : 0.90 ms\n")
    assert_clean_error(run_script("perf_calc.py", "--log", str(msame), "--batch_size", "1", check=False), "m.log", "average 0.5 ms")
    ok = _saved(tmp_path, "ok.log", calls.replace("0.5ms", "0.504ms", 1) + "Inference average time : 0.50 ms\n")
    assert throughput(ok, 1)["latency_ms"] == 0.5, "msame's own rounding (2 decimals in folder mode) is not a contradiction"


@pytest.mark.parametrize(
    "text,message",
    [
        (GUIDE_MSAME.format("0.43") + GUIDE_MSAME.format("0.47"), "appears 2 times"),
        (AIS_BENCH + AIS_BENCH, "appears 2 times"),
        (TRT85 + TRT85, "appears 2 times"),
        (TRT85 + GUIDE_MSAME.format("0.43"), "two tools"),
        ("[INFO] load model GAN_bs8.om success\n[INFO] load model GAN_bs16.om success\n" + GUIDE_MSAME.format("0.4"), "batch sizes 8, 16"),
        (MSAME_FILE_MODE + MSAME_FILE_MODE.replace("0.5ms", "0.6ms"), "appears 2 times"),
    ],
)
def test_two_runs_of_any_tool_are_refused(tmp_path, text, message):
    log = _saved(tmp_path, "two.log", text)
    assert_clean_error(run_script("perf_calc.py", "--log", str(log), "--batch_size", "16", check=False), "two.log", message)


def _saved(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------
# Upstream's parse (the ModelZoo GAN sample's test/eval_bs16_perf.sh): grep msame's folder-mode line, awk field 5,
# then fps = 1000 x batch x 4 / avg for a 310 card. Run here as the shell runs it.

UPSTREAM_AVERAGE = """grep "Inference average time : " "$1" | awk '{print $5}'"""


def upstream_average(log):
    found = subprocess.run(["bash", "-c", UPSTREAM_AVERAGE, "upstream", str(log)], capture_output=True, text=True, check=True)
    return found.stdout.split("\n")[:-1]


def upstream_fps(average, batch, chips):
    script = f"awk 'BEGIN{{printf \"%.3f\", 1000*{batch}*{chips}/({average})}}'"
    return float(subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("kind", ["single", "card"])
def test_upstreams_parse_reads_the_runners_logs(runner_logs, kind):
    (average,) = upstream_average(runner_logs[kind])  # exactly one line: msame's, the card's in a card run
    row = perf(runner_logs[kind])
    assert float(average) == row["latency_ms"]
    assert upstream_fps(average, row["batch_size"], row["chips"]) == pytest.approx(row["fps"], abs=5e-4)


@pytest.mark.parametrize("devices", ["0", "0,1"])
def test_upstreams_parse_reads_the_om_drivers_log(om_bs4, testdata, tmp_path, devices):
    _, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", "--device", devices)
    assert result.returncode == 0, result.stdout + result.stderr
    (log,) = (tmp_path / "out").glob(".*.log")
    (average,) = upstream_average(log)
    row = perf(log)
    assert (row["tool"], row["chips"]) == ("msame", 4 if devices == "0" else 2), "x4 on one chip of a 310 card, else the chips measured"
    assert float(average) == row["latency_ms"]
    assert upstream_fps(average, row["batch_size"], row["chips"]) == pytest.approx(row["fps"], abs=5e-4)


@pytest.fixture(scope="module")
def om_bs4(onnx_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("om4")
    run_script("atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(folder / "GAN_bs"), "--batch_sizes", "4", env=env_with())
    return folder
