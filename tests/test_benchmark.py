"""GAN_benchmark.py prints figures, never asserts speed: here only that it runs and that its figures are consistent."""

import json
import os

from conftest import run_script
from perf_calc import throughput


def test_benchmark_json_is_consistent(checkpoint, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_script(
        "GAN_benchmark.py",
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
        "--json",
        env=dict(os.environ, TMPDIR=str(scratch)),
    )
    # the model it exported for itself is gone with it (ONNX Runtime keeps its own telemetry file, .ses, there)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    report = json.loads(result.stdout)
    assert {(r["engine"], r["batch_size"]) for r in report["rows"]} == {
        (e, b) for e in ("pytorch_eager", "onnxruntime_fp32") for b in (1, 4)
    }
    assert abs(report["model_mflops_per_image"] - 3.007488) < 1e-6
    assert isinstance(report["machine"]["isa"], list) and report["machine"]["cpu"], "the CPU and its instruction sets beside the figures"
    assert set(report["start_up_choice_ms_by_rows"]) == {"64", "5000"}
    assert report["limit_images_per_s"] == report["matmul_peak_gflops"] * 1e9 / 3007488
    for row in report["rows"]:
        assert row["fps"] == throughput(row["log"])["fps"], "the figure is perf_calc.py's reading of the log"
        assert abs(row["fps"] - 1000 * row["batch_size"] / row["latency_ms"]) < 1e-6 * row["fps"]
    assert set(report["txt_io_ms_per_batch_of_64"]) == {"write_ours", "write_np_savetxt", "read_ours", "read_np_loadtxt"}
    for row in report["threads"]:  # the default's choice beside every fixed choice, in the same rounds
        assert row["best_fixed_ms"] == min(row["fixed_ms"].values())
        assert row["default_over_best"] == row["default_ms"] / row["best_fixed_ms"]
        assert str(row["default_threads"]) in row["fixed_ms"]


def test_int8_schemes_table(checkpoint):
    """GAN_int8_schemes.py on 2 batches: every scheme's row, its precision consistent with its verdict."""
    result = run_script("GAN_int8_schemes.py", "--pth", str(checkpoint), "--batches", "2", "--rounds", "1")
    lines = result.stdout.splitlines()
    assert "AVX" in lines[0] or "no AVX2" in lines[0], "the CPU's instruction sets are named"
    rows = [line for line in lines[2:] if line.strip()]
    assert len(rows) == 7 and rows[0].startswith("fp32 (folded)") and any("reduce_range (default)" in row for row in rows)
    for row in rows:
        max_abs, mean_abs, cosine, verdict = row[46:].split()[:4]
        assert verdict in ("PASS", "FAIL") and (verdict == "PASS") == (
            float(max_abs) <= 1.0 and float(mean_abs) <= 1e-2 and float(cosine) >= 0.999
        )
