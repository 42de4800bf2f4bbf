"""GAN_benchmark.py prints figures, never asserts speed: here only that it runs and that its figures are consistent."""

import json
import os
import re
import sys

from conftest import run_script
from perf_calc import throughput


def test_benchmark_json_is_consistent(checkpoint, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_script(
        "tools/GAN_benchmark.py",
        "--pth",
        str(checkpoint),
        "--batch_sizes",
        "1,4",
        "--rounds",
        "2",
        "--round_seconds",
        "0.01",
        "--log_dir",
        str(tmp_path / "logs"),
        "--choice_rows",
        "5000",
        "--gemm_size",
        "128",
        "--skip",
        "torch_compile",
        "--json",
        env=dict(os.environ, TMPDIR=str(scratch)),
    )
    # the model it exported for itself is gone with it (ONNX Runtime keeps its own telemetry file, .ses, there)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    report = json.loads(result.stdout)
    engines = {"pytorch_eager", "onnxruntime_fp32"} | ({"openvino_fp32"} if report["versions"]["openvino"] != "not installed" else set())
    assert {(r["engine"], r["batch_size"]) for r in report["rows"]} == {(e, b) for e in engines for b in (1, 4)}
    assert report["peers"]["torch_compile"] == "skipped (--skip)"
    assert "openvino_fp32" in report["peers"], "OpenVINO's absence is stated, never an error"
    assert abs(report["model_mflops_per_image"] - 3.007488) < 1e-6
    assert isinstance(report["machine"]["isa"], list) and report["machine"]["cpu"], "the CPU and its instruction sets beside the figures"
    assert set(report["start_up_choice_ms_by_rows"]) == {"64", "5000"}
    limits = report["limits"]
    assert limits["fp32"]["rate"] == max(e["gemm"]["rate"] for name, e in limits["engines"].items() if name != "onnxruntime int8")
    assert {"numpy", "onnxruntime", "torch"} <= set(limits["engines"]), "every fp32 engine measured in the same run"
    assert limits["int8"]["engine"] == "onnxruntime MatMulInteger"
    for row in report["rows"]:
        assert row["fps"] == throughput(row["log"])["fps"], "the figure is perf_calc.py's reading of the log"
        assert abs(row["fps"] - 1000 * row["batch_size"] / row["latency_ms"]) < 1e-6 * row["fps"]
        assert row["above_limit"] == (row["fps"] > row["limit_images_per_s"])
        assert row["share_of_limit"] is None if row["above_limit"] else 0 < row["share_of_limit"] <= 1
        assert row["cv"] >= 0 and "cpu_wait_share" in row["load"] and "steal_share" in row["load"]
        assert row["precision_vs_pytorch"]["max_abs"] < 1e-4 and row["precision_vs_pytorch"]["cosine"] > 0.99999
        if row["engine"] != "pytorch_eager":
            assert row["cold_start_ms"], "session (or compilation) and first inference"
    txt = report["txt_io_ms_per_batch_of_64"]
    assert {"write_ours", "write_np_savetxt", "read_ours", "read_np_loadtxt", "read_bytes"} <= set(txt) and txt["file_bytes"] > 0
    for row in report["threads"]:  # the default's choice beside every fixed choice, in the same blocks
        assert row["best_fixed_ms"] == min(row["fixed_ms"].values())
        assert row["default_ms"] == row["fixed_ms"][str(row["default_threads"])]
        assert row["default_over_best"] == row["default_ms"] / row["best_fixed_ms"]


def test_a_figure_above_its_limit_is_never_a_share(checkpoint, tmp_path, monkeypatch, capsys):
    """A limit that does not bound (here: every rate divided by a million) is reported as a bug of the limit."""
    import GAN_benchmark

    import gan.limits

    real = gan.limits.measure_limits

    def too_low(weights, n):
        limits = real(weights, 64)
        for key in ("fp32", "int8"):
            limits[key]["rate"] /= 1e6
        for figure in limits["bandwidth"].values():
            figure["rate"] /= 1e6
        return limits

    monkeypatch.setattr(GAN_benchmark, "measure_limits", too_low)
    args = GAN_benchmark.get_args_parser().parse_args(
        ["--pth", str(checkpoint), "--batch_sizes", "2", "--rounds", "2", "--round_seconds", "0", "--choice_rows", "8"]
        + ["--skip", "torch_compile,openvino", "--log_dir", str(tmp_path / "logs")]
    )
    assert GAN_benchmark.main(args) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("pytorch_eager", "onnxruntime_fp32 "))][:2]
    assert len(table) == 2 and all("ABOVE its limit: a limit bug" in line for line in table)
    shares = [float(m) for line in table for m in re.findall(r"(\d+(?:\.\d+)?)% of [0-9]", line)]
    assert shares == [], "no share printed for a figure above its limit"
    assert gan.limits.share_of_limit(2.0, 1.0) is None and gan.limits.share_of_limit(1.0, 1.0) == 1.0


def test_noise_is_reported_as_unstable():
    """A call whose blocks alternate between 1 and 4 ms, and a machine with a busy process beside: both unstable."""
    import itertools
    import subprocess
    import time

    from gan.perf import MachineLoad, time_interleaved, unstable_reasons

    pauses = itertools.cycle([0.001] * 5 + [0.004] * 5)
    timed = time_interleaved({"noisy": lambda: time.sleep(next(pauses))}, blocks=6, block_seconds=0.005, lead_in_seconds=0)
    spread = {"cv": timed["noisy"]["cv"], "blocks": 6}
    assert timed["noisy"]["cv"] > 0.1 and unstable_reasons(spread)[0].startswith("the means of 6 blocks vary by")
    quiet = time_interleaved({"steady": lambda: None}, blocks=6, block_seconds=0.001, lead_in_seconds=0)
    assert quiet["steady"]["cv"] >= 0
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        with MachineLoad() as load:
            time.sleep(1.0)
    finally:
        busy.kill()
        busy.wait()
    assert load.figures["others_cpu_share"] > 0.1
    assert any(r.startswith("other processes used") for r in unstable_reasons(None, load.figures))


def test_int8_schemes_table(checkpoint):
    """GAN_int8_schemes.py on 2 batches: every scheme's row, its precision consistent with its verdict."""
    result = run_script("tools/GAN_int8_schemes.py", "--pth", str(checkpoint), "--batches", "2", "--rounds", "1")
    lines = result.stdout.splitlines()
    assert "AVX" in lines[0] or "no AVX2" in lines[0], "the CPU's instruction sets are named"
    rows = [line for line in lines[2:] if line.strip()]
    assert len(rows) == 7 and rows[0].startswith("fp32 (folded)") and any("reduce_range (default)" in row for row in rows)
    for row in rows:
        max_abs, mean_abs, cosine, verdict = row[46:].split()[:4]
        assert verdict in ("PASS", "FAIL") and (verdict == "PASS") == (
            float(max_abs) <= 1.0 and float(mean_abs) <= 1e-2 and float(cosine) >= 0.999
        )
