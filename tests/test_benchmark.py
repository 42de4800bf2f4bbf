"""GAN_benchmark.py prints figures, never asserts speed: here only that it runs and that its figures are consistent."""

import json

from conftest import run_script
from perf_calc import throughput


def test_benchmark_json_is_consistent(checkpoint, tmp_path):
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
        "--json",
    )
    report = json.loads(result.stdout)
    assert {(r["engine"], r["batch_size"]) for r in report["rows"]} == {
        (e, b) for e in ("pytorch_eager", "onnxruntime_fp32") for b in (1, 4)
    }
    assert abs(report["model_mflops_per_image"] - 3.007488) < 1e-6
    assert report["limit_images_per_s"] == report["matmul_peak_gflops"] * 1e9 / 3007488
    for row in report["rows"]:
        assert row["fps"] == throughput(row["log"])["fps"], "the figure is perf_calc.py's reading of the log"
        assert abs(row["fps"] - 1000 * row["batch_size"] / row["latency_ms"]) < 1e-6 * row["fps"]
    assert set(report["txt_io_ms_per_batch_of_64"]) == {"write_ours", "write_np_savetxt", "read_ours", "read_np_loadtxt"}
    for row in report["threads"]:  # the default's choice beside every fixed choice, in the same rounds
        assert row["best_fixed_ms"] == min(row["fixed_ms"].values())
        assert row["default_over_best"] == row["default_ms"] / row["best_fixed_ms"]
        assert str(row["default_threads"]) in row["fixed_ms"]
