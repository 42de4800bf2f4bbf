"""GAN_regression.py: a run judged against its baseline. The same pipeline twice is nothing worse; planted changes are
found, each in its section, with its figures: an int8 model (precision), a slowed runner (speed, with the rank test's
p-value), another checkpoint (outputs and image quality), another CPU and versions (environment, listed only).
"""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_clean_error, random_generator, run_script
from gan.records import MANIFEST, SUMMARY, read_manifest, read_regression, read_summary, save_step, write_json
from gan.runs import _digest, beside_run, manifest_path, run_summary
from GAN_regression import mann_whitney_greater


def regression(baseline, candidate, tmp_path, *extra):
    out = tmp_path / "regression.json"
    result = run_script(
        "GAN_regression.py", "--baseline", str(baseline), "--candidate", str(candidate), "--save_json", str(out), *extra, check=False
    )
    return result, read_regression(out)


def rows_of(record, section):
    return {row["figure"]: row for row in record["rows"] if row["section"] == section}


def copy_workdir(source, target):
    shutil.copytree(source, target, symlinks=True)
    (target / ".pipeline.lock").unlink(missing_ok=True)
    return target


def plant_summary(workdir, **changes):
    """Rewrite the runner's summary of the workdir's run through the project's own writer, its digest in the manifest with it."""
    run, summary = run_summary(workdir / "out")
    summary.update(changes)
    path = beside_run(run.path, "_summary.json")
    write_json(path, summary, SUMMARY)
    manifest = read_manifest(manifest_path(run.path))
    manifest["beside"][path.name] = _digest(path)
    write_json(manifest_path(run.path), manifest, MANIFEST)


def timed(times):
    """The summary fields of a run with these per-call latencies (ms), batch 4, on a quiet machine."""
    times = [float(t) for t in times]
    stats = {"min": min(times), "max": max(times), "mean": float(np.mean(times)), "median": float(np.median(times))}
    stats |= {"percentile(90%)": float(np.percentile(times, 90)), "percentile(99%)": float(np.percentile(times, 99)), "count": len(times)}
    return {
        "npu_compute_time_list": times,
        "NPU_compute_time": stats,
        "throughput": 4000 / stats["mean"],
        "load": {"cpu_wait_share": 0.0, "loadavg": [0.1, 0.1, 0.1]},
    }


def test_the_same_pipeline_twice_is_nothing_worse(pipeline_workdir, checkpoint, tmp_path):
    """run_pipeline.sh --baseline: the regression step, the report's section, exit 0, a record of the fixed shape."""
    baseline = pipeline_workdir[0]
    second = tmp_path / "second"
    result = run_script(
        "run_pipeline.sh",
        "--pth",
        str(checkpoint),
        "--workdir",
        str(second),
        "--iters",
        "3",
        "--batch_size",
        "4",
        "--baseline",
        str(baseline),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    record = read_regression(second / "regression.json")
    assert record["verdict"] == "nothing worse" and record["worse"] == 0
    assert not [r for r in record["rows"] if r["verdict"] == "worse"]
    assert {r["section"] for r in record["rows"]} == {"environment", "outputs", "precision", "image quality", "speed"}
    outputs = rows_of(record, "outputs")["bit-identical elements"]
    assert outputs["verdict"] == "same" and outputs["baseline"] == "9,408"
    assert rows_of(record, "environment")["sha256 of the weights"]["verdict"] == "same"
    assert rows_of(record, "environment")["inputs (vectors/)"]["verdict"] == "same"
    for figure, row in rows_of(record, "image quality").items():
        assert row["verdict"] == "same", figure  # the same outputs: no interval excludes 0 by more than noise
    report = (second / "report.md").read_text()
    assert "Against the baseline" in report and "nothing worse" in report
    assert "regression\tok" in (second / "steps.tsv").read_text()


def test_an_int8_candidate_is_worse_in_precision(pipeline_workdir, checkpoint, tmp_path):
    baseline = pipeline_workdir[0]
    candidate = copy_workdir(baseline, tmp_path / "int8")
    run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={tmp_path / 'GAN.onnx'}", "--quantize", "int8")
    shutil.rmtree(candidate / "out")
    run_script(
        "run_msame.sh",
        "--model",
        str(tmp_path / "GAN_int8.onnx"),
        "--input",
        str(candidate / "vectors"),
        "--output",
        str(candidate / "out"),
        "--outfmt",
        "TXT",
    )
    run_script("GAN_compare.py", "--online_path", str(candidate / "images"), "--offline_path", str(candidate / "out"), "--quiet", "--diff_image", "", "--error_plot", "",
               "--save_json", str(candidate / "compare.json"), check=False)  # fmt: skip
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 1
    line = assert_clean_error(result, "worse than the baseline", "precision: max_abs against online")
    assert line.startswith("GAN_regression.py: error: ")
    precision = rows_of(record, "precision")
    assert (precision["fp32 preset"]["baseline"], precision["fp32 preset"]["candidate"], precision["fp32 preset"]["verdict"]) == (
        "PASS",
        "FAIL",
        "worse",
    )
    assert precision["max_abs against online"]["verdict"] == "worse"
    assert float(precision["max_abs against online"]["candidate"]) > 100 * float(precision["max_abs against online"]["baseline"])
    assert rows_of(record, "outputs")["bit-identical elements"]["verdict"] == "worse"
    assert record["verdict"] == "worse" and "Traceback" not in result.stderr


@pytest.fixture
def quiet_pair(pipeline_workdir, tmp_path):
    """(baseline, candidate): copies of one run whose summaries hold 60 per-call latencies each, planted."""
    rng = np.random.default_rng(0)
    baseline = copy_workdir(pipeline_workdir[0], tmp_path / "baseline")
    candidate = copy_workdir(pipeline_workdir[0], tmp_path / "candidate")
    plant_summary(baseline, **timed(0.30 * rng.lognormal(0, 0.02, 60)))
    return baseline, candidate, rng


def test_a_slowed_runner_is_worse_in_speed_with_its_p_value(quiet_pair, tmp_path):
    baseline, candidate, rng = quiet_pair
    plant_summary(candidate, **timed(0.45 * rng.lognormal(0, 0.02, 60)))  # x1.5 per call
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 1
    assert_clean_error(result, "speed: p50 latency (ms), batch 4")
    speed = rows_of(record, "speed")["p50 latency (ms), batch 4"]
    assert speed["verdict"] == "worse" and speed["p_slower"] < 1e-6 and speed["calls"] == [60, 60]
    assert 1.3 < float(speed["change"].lstrip("x")) < 1.7
    assert f"p = {speed['p_slower']:.2g}" in speed["reason"]
    assert rows_of(record, "speed")["images/s, batch 4"]["verdict"] == "worse"


def test_a_slowdown_on_a_busy_machine_is_not_comparable(quiet_pair, tmp_path):
    baseline, candidate, rng = quiet_pair
    plant_summary(candidate, **(timed(0.45 * rng.lognormal(0, 0.02, 60)) | {"load": {"cpu_wait_share": 0.4, "loadavg": [3.5, 3.0, 2.0]}}))
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 0, result.stderr
    speed = rows_of(record, "speed")["p50 latency (ms), batch 4"]
    assert speed["verdict"] == "not comparable" and "waited for a CPU 40%" in speed["reason"]
    assert rows_of(record, "environment")["CPU waits while timed"]["candidate"] == "40.0% of the time (busy)"


def test_a_machine_that_drifts_more_than_the_factor_cannot_call_a_slowdown(quiet_pair, tmp_path):
    """Measured on a shared VM: a run's speed drifts x1.13 to x1.43 within itself; a slowdown of that size between two
    runs is not told from noise: not comparable, naming the drift (and judged with a --factor above it)."""
    baseline, candidate, rng = quiet_pair
    drifting = 0.45 * rng.lognormal(0, 0.02, 60) * np.repeat(np.linspace(1.0, 1.3, 10), 6)
    plant_summary(candidate, **timed(drifting))
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 0, result.stderr
    speed = rows_of(record, "speed")["p50 latency (ms), batch 4"]
    assert speed["verdict"] == "not comparable" and "the candidate's speed drifted x1.3" in speed["reason"]
    assert speed["drift"][0] < 1.1 < 1.25 < speed["drift"][1]
    result, record = regression(baseline, candidate, tmp_path, "--factor", "1.35")
    assert rows_of(record, "speed")["p50 latency (ms), batch 4"]["verdict"] == "worse"


def test_noise_within_the_factor_is_the_same(quiet_pair, tmp_path):
    baseline, candidate, rng = quiet_pair
    plant_summary(candidate, **timed(0.31 * rng.lognormal(0, 0.02, 60)))  # 3% slower: significant or not, within x1.10
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 0, result.stderr
    assert {r["verdict"] for r in rows_of(record, "speed").values()} == {"same"}


def test_another_cpu_and_versions_are_listed_not_judged(quiet_pair, tmp_path):
    baseline, candidate, _ = quiet_pair
    plant_summary(
        candidate,
        cpu={"model": "Intel(R) Xeon(R) Platinum", "isa": ["AVX2", "AVX-512F", "AMX"], "cores": 2},
        versions={"python": "3.11.7", "onnxruntime": "1.99.0", "numpy": "2.4.6"},
    )
    result, record = regression(baseline, candidate, tmp_path)
    assert result.returncode == 0, result.stderr
    environment = rows_of(record, "environment")
    assert environment["CPU"]["verdict"] == environment["instruction sets"]["verdict"] == "differs"
    assert environment["instruction sets"]["candidate"] == "AVX2 AVX-512F AMX"
    assert environment["version of onnxruntime"] == dict(environment["version of onnxruntime"], candidate="1.99.0", verdict="differs")
    assert not [r for r in record["rows"] if r["verdict"] == "worse"]


def test_another_checkpoint_changes_outputs_and_quality(checkpoint, tmp_path):
    """Two generators, 128 images each: outputs beyond the preset of each other, and an image-quality figure whose
    bootstrap interval excludes 0."""
    other = tmp_path / "other.pth"
    torch.save(random_generator(seed=7).state_dict(), other)
    workdirs = []
    for name, weights in (("a", checkpoint), ("b", other)):
        run_script("run_pipeline.sh", "--pth", str(weights), "--workdir", str(tmp_path / name), "--iters", "4", "--batch_size", "32")
        workdirs.append(tmp_path / name)
    result, record = regression(*workdirs, tmp_path)
    assert result.returncode == 1
    assert rows_of(record, "environment")["sha256 of the weights"]["verdict"] == "differs"
    assert rows_of(record, "outputs")["bit-identical elements"]["verdict"] == "worse"
    quality = rows_of(record, "image quality")
    changed = [name for name, row in quality.items() if row["verdict"] != "same"]
    assert changed, quality
    for name in changed:
        low, high = quality[name]["interval"]
        assert not low <= 0 <= high


@pytest.mark.parametrize(
    ("flags", "message"),
    [(("--factor", "1"), "--factor"), (("--alpha", "1.5"), "--alpha"), (("--resamples", "5"), "--resamples")],
)
def test_bad_flags_exit_2(pipeline_workdir, flags, message):
    result = run_script(
        "GAN_regression.py", "--baseline", str(pipeline_workdir[0]), "--candidate", str(pipeline_workdir[0]), *flags, check=False
    )
    assert result.returncode == 2
    assert_clean_error(result, message)


def test_a_missing_workdir_is_one_line(pipeline_workdir, tmp_path):
    result = run_script("GAN_regression.py", "--baseline", str(pipeline_workdir[0]), "--candidate", str(tmp_path / "nowhere"), check=False)
    assert result.returncode == 1
    assert_clean_error(result, "nowhere", "--candidate")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 10, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.floats(0.01, 10, allow_nan=False), min_size=1, max_size=40),
    st.booleans(),
)
def test_mann_whitney_matches_scipy(x, y, rounded):
    """The rank test against scipy's (where scipy is installed), ties included."""
    stats = pytest.importorskip("scipy.stats")
    if rounded:  # many ties
        x, y = [round(v) for v in x], [round(v) for v in y]
    ours = mann_whitney_greater(x, y)
    if len(set(x) | set(y)) == 1:
        assert ours == 1.0
        return
    theirs = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue
    assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def test_the_record_reads_back_and_a_spoiled_one_is_refused(quiet_pair, tmp_path):
    baseline, candidate, _ = quiet_pair
    _, record = regression(baseline, candidate, tmp_path)
    path = tmp_path / "regression.json"
    assert read_regression(path) == record
    spoiled = json.loads(path.read_text())
    spoiled["rows"][0]["verdict"] = "fine"
    path.write_text(json.dumps(spoiled))
    with pytest.raises(Exception, match="verdict"):
        read_regression(path)
    assert read_summary(beside_run(run_summary(candidate / "out")[0].path, "_summary.json"))["cpu"]


def test_sweeps_are_compared_at_every_batch_size_in_both(quiet_pair, tmp_path):
    """A sweep holds no per-call latencies: within the factor the same, beyond it not comparable, never worse."""
    baseline, candidate, _ = quiet_pair

    def sweep(workdir, rates):
        rows = [
            {
                "batch_size": b,
                "images_per_s_per_card": r,
                "latency_ms": 1000 * b / r,
                "p50_ms": None,
                "p99_ms": None,
                "chips": 1,
                "chips_rule": "1",
                "tool": "onnxruntime",
            }
            for b, r in rates.items()
        ]
        best = max(rows, key=lambda r: r["images_per_s_per_card"])
        (workdir / "sweep").mkdir()
        save_step(workdir / "sweep" / "sweep.json", "sweep", {"model": "GAN.onnx", "device": "0", "rows": rows, "best_batch": best["batch_size"],
                  "best_images_per_s_per_card": best["images_per_s_per_card"], "plot": None})  # fmt: skip

    sweep(baseline, {1: 5000.0, 16: 40000.0, 64: 60000.0})
    sweep(candidate, {1: 5100.0, 16: 20000.0, 32: 50000.0})
    _, record = regression(baseline, candidate, tmp_path)
    speed = rows_of(record, "speed")
    assert speed["images/s of the sweep, batch 1"]["verdict"] == "same"
    assert speed["images/s of the sweep, batch 16"]["verdict"] == "not comparable"
    assert not any("batch 32" in figure or "sweep, batch 64" in figure for figure in speed), "only batch sizes in both"
