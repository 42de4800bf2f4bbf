"""perf_calc.py against logs in the real tools' formats (ascend_tools.md), including the guide's own lines."""

import json

import pytest

from conftest import assert_clean_error, run_script
from perf_calc import throughput

GUIDE_MSAME = "Inference average time : {0} ms\nInference average time without first time: {0} ms\n"
GUIDE_TRT7 = """[11/11/2021-13:11:22] [I] min: 0.048584 ms
[11/11/2021-13:11:22] [I] max: 4.11572 ms
[11/11/2021-13:11:22] [I] median: 0.0817871 ms
[11/11/2021-13:11:22] [I] GPU Compute
[11/11/2021-13:11:22] [I] min: 0.048584 ms
[11/11/2021-13:11:22] [I] max: 4.13281 ms
[11/11/2021-13:11:22] [I] mean: {0} ms
[11/11/2021-13:11:22] [I] median: 0.0856934 ms
[11/11/2021-13:11:22] [I] percentile: 0.118164 ms at 99%
[11/11/2021-13:11:22] [I] total compute time: 1.82233 s
"""
# TensorRT 8.5 summary block (sampleReporting.cpp), never shown to the parser while it was written.
TRT85 = """&&&& RUNNING TensorRT.trtexec [TensorRT v8501] # trtexec --onnx=GAN.onnx --fp16 --shapes=Z:16x100
[03/02/2023-10:00:01] [I] === Performance summary ===
[03/02/2023-10:00:01] [I] Throughput: 10843.1 qps
[03/02/2023-10:00:01] [I] Latency: min = 0.101 ms, max = 0.512 ms, mean = 0.1168 ms, median = 0.11 ms, percentile(90%) = 0.12 ms, percentile(95%) = 0.13 ms, percentile(99%) = 0.2 ms
[03/02/2023-10:00:01] [I] Enqueue Time: min = 0.02 ms, max = 0.1 ms, mean = 0.03 ms, median = 0.03 ms, percentile(90%) = 0.04 ms, percentile(95%) = 0.04 ms, percentile(99%) = 0.06 ms
[03/02/2023-10:00:01] [I] H2D Latency: min = 0.005 ms, max = 0.03 ms, mean = 0.0071 ms, median = 0.007 ms, percentile(90%) = 0.008 ms, percentile(95%) = 0.008 ms, percentile(99%) = 0.01 ms
[03/02/2023-10:00:01] [I] GPU Compute Time: min = 0.07 ms, max = 0.4 ms, mean = 0.08 ms, median = 0.079 ms, percentile(90%) = 0.09 ms, percentile(95%) = 0.095 ms, percentile(99%) = 0.12 ms
[03/02/2023-10:00:01] [I] D2H Latency: min = 0.02 ms, max = 0.08 ms, mean = 0.0297 ms, median = 0.03 ms, percentile(90%) = 0.03 ms, percentile(95%) = 0.03 ms, percentile(99%) = 0.04 ms
[03/02/2023-10:00:01] [I] Total Host Walltime: 3.00011 s
[03/02/2023-10:00:01] [I] Total GPU Compute Time: 2.9 s
"""
AIS_BENCH = """[INFO] load model GAN_bs64.om success
[INFO] -----------------Performance Summary------------------
[INFO] NPU_compute_time (ms): min = 0.61, max = 0.9, mean = 0.64, median = 0.63, percentile(99%) = 0.8
[INFO] throughput 1000*batchsize.mean(64)/NPU_compute_time.mean(0.64): 100000.0
[INFO] ------------------------------------------------------
"""
MSAME_FILE_MODE = """[INFO] acl init success
[INFO] open device 0 success
[INFO] load model ./GAN_bs16.om success
Inference time: 0.62ms
Inference time: 0.5ms
Inference time: 0.5ms
Inference time: 0.5ms
Inference average time: 0.530000 ms
Inference average time without first time: 0.500000 ms
[INFO] unload model success, model Id is 1
[INFO] pid: 4242 Execute sample success
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "tool,text,batch,expected",
    [
        ("msame", GUIDE_MSAME.format("0.43"), 1, 9302.326),
        ("msame", GUIDE_MSAME.format("0.47"), 16, 136170.213),
        ("trtexec", GUIDE_TRT7.format("0.0826078"), 1, 12105.394),
        ("trtexec", GUIDE_TRT7.format("0.0887248"), 16, 180332.895),
    ],
)
def test_the_guides_figures(tmp_path, tool, text, batch, expected):
    result = throughput(write(tmp_path, "guide.log", text), batch_size=batch)
    assert result["tool"] == tool
    assert round(result["fps"], 3) == expected


def test_trtexec_85_batch_from_shapes(tmp_path):
    result = throughput(write(tmp_path, "t4.log", TRT85))
    assert (result["tool"], result["batch_size"], result["chips"], result["latency_ms"]) == ("trtexec", 16, 1, 0.08)
    assert round(result["fps"], 3) == 200000.0, "GPU Compute mean, not Latency or H2D"


def test_ais_bench_text_and_json(tmp_path):
    result = throughput(write(tmp_path, "ais.log", AIS_BENCH))
    assert (result["tool"], result["batch_size"], result["chips"], result["latency_ms"]) == ("ais_bench", 64, 4, 0.64)
    assert result["chips_rule"].startswith("x4, the ModelZoo rule"), "one chip of a 310 card, as for msame: the one chip rule"
    assert result["fps"] == pytest.approx(4 * 100000.0), "ais_bench's own throughput (per chip) x4 for the card"
    assert throughput(write(tmp_path, "ais.log", AIS_BENCH), chips=1)["fps"] == pytest.approx(100000.0), "a 310P: ais_bench's own figure"
    summary = {
        "NPU_compute_time": {"min": 0.6, "max": 0.9, "mean": 0.64, "median": 0.63, "percentile(99%)": 0.8, "count": 100},
        "H2D_latency": {"mean": 0.1},
        "throughput": 25000.0,
        "args": ["--model", "GAN_bs16.om"],
    }
    result = throughput(write(tmp_path, "2023_01_03-06_35_53_summary.json", json.dumps(summary)))
    assert (result["tool"], result["batch_size"], result["latency_ms"]) == ("ais_bench", 16, 0.64)
    old = (
        "[INFO] NPU_compute_time (ms): min = 1.0, max = 2.0, mean = 1.25, median = 1.2, percentile(99%) = 1.9\n"
        "[INFO] throughput (1000*batchsize/NPU_compute_time): 12800.0\n"
    )
    assert throughput(write(tmp_path, "old.log", old))["batch_size"] == 16, "2022-06 wording: batch from its formula"


def test_msame_file_mode_batch_from_model_name(tmp_path):
    result = throughput(write(tmp_path, "bs16.log", MSAME_FILE_MODE))
    assert (result["mode"], result["batch_size"], result["chips"], result["latency_ms"]) == ("file", 16, 4, 0.53)
    assert round(result["fps"], 3) == round(1000 * 16 * 4 / 0.53, 3)
    assert throughput(write(tmp_path, "bs16.log", MSAME_FILE_MODE), chips=1)["chips"] == 1, "a 310P has one chip"


def test_cli_table_baseline_and_json(tmp_path):
    msame = write(tmp_path, "GAN_bs16.log", GUIDE_MSAME.format("0.47"))
    t4 = write(tmp_path, "t4_bs16.log", GUIDE_TRT7.format("0.0887248"))
    out = run_script("perf_calc.py", "--log", str(msame), "--batch_size", "16", "--baseline", str(t4), "--baseline_batch_size", "16")
    assert "136170.213" in out.stdout and "180332.895" in out.stdout and "0.755 x baseline" in out.stdout and "PASS" in out.stdout
    js = json.loads(
        run_script(
            "perf_calc.py", "--log", str(msame), "--batch_size", "16", "--baseline", str(t4), "--baseline_batch_size", "16", "--json"
        ).stdout
    )
    row = js["logs"][0]
    assert (row["tool"], row["batch_size"], row["chips"], row["verdict"]) == ("msame", 16, 4, "PASS")
    assert round(row["fps"], 3) == 136170.213 and round(row["baseline_fps"], 3) == 180332.895
    slow = write(tmp_path, "slow.log", GUIDE_MSAME.format("4.0"))
    fail = run_script(
        "perf_calc.py", "--log", str(slow), "--batch_size", "16", "--baseline", str(t4), "--baseline_batch_size", "16", check=False
    )
    assert fail.returncode == 1 and "FAIL" in fail.stdout


@pytest.mark.parametrize(
    "text,message",
    [
        ("hello world\n", "not a log of a known tool"),
        (
            "# Notes\n\nperf_calc reads NPU_compute_time and the Performance Summary of ais_bench, and GPU Compute.\n",
            "not a log of a known tool",
        ),
        ("Inference average time : 0 ms\n", "not a positive number"),
        ("Inference average time : -1.5 ms\n", "not a positive number"),
        ("Inference average time : abc ms\n", "not a number"),
        ("Inference time: 0.5ms\nInference time: 0.4ms\n", "truncated msame log"),
        ("[11/11/2021-13:11:22] [I] GPU Compute\n[11/11/2021-13:11:22] [I] min: 0.04 ms\n", "truncated trtexec log"),
        ("[INFO] -----------------Performance Summary------------------\n", "truncated ais_bench log"),
    ],
)
def test_bad_logs_are_clear_errors(tmp_path, text, message):
    log = write(tmp_path, "bad.log", text)
    assert_clean_error(run_script("perf_calc.py", "--log", str(log), "--batch_size", "1", check=False), log, message)


def test_missing_batch_size_is_a_clear_error(tmp_path):
    log = write(tmp_path, "x.log", GUIDE_MSAME.format("0.43"))
    assert_clean_error(run_script("perf_calc.py", "--log", str(log), check=False), log, "--batch_size")


TRT80 = """&&&& RUNNING TensorRT.trtexec [TensorRT v8001] # trtexec --onnx=GAN.onnx --fp16 --shapes=Z:1x100
[07/01/2021-10:00:01] [I] === Performance summary ===
[07/01/2021-10:00:01] [I] Latency: min = 0.1 ms, max = 0.5 ms, mean = 0.12 ms, median = 0.11 ms, percentile(99%) = 0.3 ms
[07/01/2021-10:00:01] [I] GPU Compute Time: min = 0.07 ms, max = 0.4 ms, mean = 0.08 ms, median = 0.079 ms, percentile(99%) = 0.15 ms
"""
RUNNER = """[INFO] ONNX Runtime runner with msame's interface
[INFO] model GAN.onnx, batch size 64, 3 input file(s), 1 worker(s)
Inference time: 1.1ms
Inference time: 1.3ms
Inference time: 0.9ms
Inference average time : 1.100000 ms
Inference average time without first time: 1.100000 ms
[INFO] compute_time (ms): min = 0.900000, max = 1.300000, mean = 1.100000, median = 1.100000, percentile(90%) = 1.260000, percentile(99%) = 1.296000
[INFO] throughput 1000*batchsize(64)/compute_time.mean(1.100000): 58181.818
"""


@pytest.mark.parametrize(
    "name,text,p50,p99",
    [
        ("ais.log", AIS_BENCH, 0.63, 0.8),
        ("trt7.log", GUIDE_TRT7.format("0.0826078"), 0.0856934, 0.118164),
        ("trt80.log", TRT80, 0.079, 0.15),
        ("trt85.log", TRT85, 0.079, 0.12),
        ("runner.log", RUNNER, 1.1, 1.296),
        ("msame_file.log", MSAME_FILE_MODE, 0.5, 0.6164),  # numpy on its four per-call lines: 0.62, 0.5, 0.5, 0.5
        ("guide_msame.log", GUIDE_MSAME.format("0.43"), None, None),  # averages only: no distribution, no figure
    ],
)
def test_p50_and_p99_wherever_the_log_has_them(tmp_path, name, text, p50, p99):
    result = throughput(write(tmp_path, name, text), batch_size=1)
    assert result["p50_ms"] == pytest.approx(p50) if p50 is not None else result["p50_ms"] is None
    assert result["p99_ms"] == pytest.approx(p99) if p99 is not None else result["p99_ms"] is None
    assert result["fps"] == pytest.approx(1000 * result["batch_size"] * result["chips"] / result["latency_ms"]), (
        "throughput stays the ModelZoo formula on the mean"
    )


def test_trtexec7_percentile_other_than_99_is_not_p99(tmp_path):
    text = GUIDE_TRT7.format("0.08").replace("percentile: 0.118164 ms at 99%", "percentile: 0.1 ms at 95%")
    result = throughput(write(tmp_path, "trt7_95.log", text), batch_size=1)
    assert result["p50_ms"] == pytest.approx(0.0856934) and result["p99_ms"] is None


def test_summary_json_of_ais_bench_and_of_the_runner(tmp_path):
    ais = {
        "NPU_compute_time": {"min": 0.6, "max": 0.9, "mean": 0.64, "median": 0.63, "percentile(99%)": 0.8, "count": 100},
        "throughput": 25000.0,
        "args": ["--model", "GAN_bs16.om"],
    }
    result = throughput(write(tmp_path, "2023_01_03-06_35_53_summary.json", json.dumps(ais)))
    assert (result["tool"], result["p50_ms"], result["p99_ms"]) == ("ais_bench", 0.63, 0.8)
    ours = dict(
        ais,
        tool="onnxruntime (CPU): compute_time stored under ais_bench's NPU_compute_time",
        batchsize=64.0,
        workers=2,
        args=["msame_onnxruntime.py"],
    )
    result = throughput(write(tmp_path, ".run_summary.json", json.dumps(ours)))
    assert (result["tool"], result["batch_size"], result["chips"]) == ("onnxruntime", 64, 2)


def test_table_shows_dashes_where_there_is_no_distribution(tmp_path):
    log = write(tmp_path, "GAN_bs16.log", GUIDE_MSAME.format("0.47"))
    table = run_script(
        "perf_calc.py", "--log", str(log), "--log", str(write(tmp_path, "r.log", RUNNER)), "--batch_size", "16"
    ).stdout.splitlines()
    assert table[0].split() == ["log", "tool", "batch", "chips", "latency_ms", "p50_ms", "p99_ms", "fps"]
    assert table[1].split()[5:7] == ["-", "-"] and table[2].split()[5:7] == ["1.1", "1.296"]
    rows = json.loads(
        run_script("perf_calc.py", "--log", str(log), "--log", str(tmp_path / "r.log"), "--batch_size", "16", "--json").stdout
    )["logs"]
    assert (rows[0]["p50_ms"], rows[0]["p99_ms"], rows[1]["p99_ms"]) == (None, None, 1.296)


def test_a_mangled_statistics_line_is_not_a_traceback(tmp_path):
    """Found by the long fuzzing campaign: `max =ercentile(90%)` read "e" as a number."""
    log = write(
        tmp_path,
        "GAN_bs64.log",
        "[INFO] ONNX Runtime runner with msame's interface\n[INFO] model GAN.onnx, batch size 64, 1 input file(s), 1 worker(s)\n"
        "Inference average time : 1.000000 ms\n[INFO] compute_time (ms): min = 0.98, max =ercentile(90%) = 1.01, percentile(99%) = 1.02\n",
    )
    row = throughput(log)
    assert (row["latency_ms"], row["p99_ms"], row["p50_ms"]) == (1.0, 1.02, None), "the readable pairs are read, the mangled one is not"


@pytest.mark.parametrize("field", ['"args": [0, "64"]', '"args": "--batchsize 8"', '"workers": "2", "tool": "onnxruntime"'])
def test_a_summary_json_with_fields_of_other_types_is_not_a_traceback(tmp_path, field):
    """Found by the second fuzzing campaign: argv items that were not strings."""
    text = '{"NPU_compute_time": {"mean": 0.64}, "throughput": 100000.0, ' + field + "}"
    row = throughput(write(tmp_path, "s.json", text), batch_size=64)
    assert row["latency_ms"] == 0.64 and row["chips"] >= 1


def test_a_log_whose_figures_give_no_finite_throughput_is_refused(tmp_path):
    """Found by the 20,000-example campaign: a denormal latency gave Inf images/s."""
    text = AIS_BENCH.replace("mean = 0.64", "mean = 1e-320")
    result = run_script("perf_calc.py", "--log", str(write(tmp_path, "ais.log", text)), check=False)
    assert result.returncode == 1 and assert_clean_error(result, "ais.log", "gives no finite throughput")


@pytest.mark.parametrize("batch", ["1e400", "nan"])
def test_an_unreadable_batch_in_the_throughput_line_falls_back_to_the_model_name(tmp_path, batch):
    text = AIS_BENCH.replace("batchsize.mean(64)", f"batchsize.mean({batch})")
    assert throughput(write(tmp_path, "ais.log", text))["batch_size"] == 64, "GAN_bs64.om, named in the log"


def test_spread_and_unstable_lines_of_the_runner_and_msame_per_call_lines(tmp_path):
    runner = RUNNER + "[INFO] spread: 12.5% (CV of 5 blocks' means)\n[WARN] unstable: the means of 5 blocks vary by 12.5%\n"
    result = throughput(write(tmp_path, "runner_spread.log", runner))
    assert result["spread"] == {"cv": 0.125, "blocks": 5} and result["unstable"].startswith("the means of 5 blocks")
    assert "spread" not in throughput(write(tmp_path, "runner_old.log", RUNNER)), "three calls: no spread to tell"
    calls = "".join(f"Inference time: {t}ms\n" for t in (1.0, 1.0, 2.0, 2.0))
    msame = "[INFO] load model GAN_bs1.om success\n" + calls + "Inference average time : 1.500000 ms\n"
    spread = throughput(write(tmp_path, "GAN_bs1.log", msame))["spread"]
    assert spread["blocks"] == 2 and spread["cv"] == pytest.approx(0.5 / 1.5 * 2**0.5)
