"""One input boundary (issue 20): times in records compared as instants, a run never written inside another, a model
read from the folder it really lies in, NUL bytes and impossible dates refused where they enter.

Each test asserts the exit code, the one stderr line, and what is (and is not) left on disk.
"""

import json
import os
import stat

import numpy as np
import pytest
from test_faults import make_vectors, run, runs_in
from test_walkarounds import external_data_model

from conftest import assert_clean_error, latent, run_script


@pytest.fixture
def two_runs(onnx_model, testdata, tmp_path):
    """(out, [first run, second run]): two complete runs of the test data, the second of other inputs."""
    _, vectors = testdata
    other = make_vectors(tmp_path / "other", 3)
    out = tmp_path / "out"
    for folder in (vectors, other):
        run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(folder), "--output", str(out), "--outfmt", "TXT")
    return out, runs_in(out)


def set_started(run_dir, started):
    path = run_dir.parent / f".{run_dir.name}.manifest.json"
    manifest = json.loads(path.read_text())
    manifest["started"] = started
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_runs_are_ordered_by_instants_in_any_time_zone(two_runs, tmp_path, zone):
    """01:10-05:00 is 40 minutes after 01:30-04:00 (the night US daylight saving ends): the later run, whatever TZ says."""
    out, (first, second) = two_runs
    set_started(first, "2026-11-01T01:10:00.000-05:00")
    set_started(second, "2026-11-01T01:30:00.000-04:00")
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}", env=dict(os.environ, TZ=zone))
    assert result.returncode == 0, result.stderr
    assert first.name in result.stdout and second.name not in result.stdout


@pytest.mark.parametrize(
    "started,reason",
    [
        ("2026-02-30T10:00:00.000+00:00", "an ISO 8601 time with its UTC offset"),
        ("2026-11-01T01:10:00.000", "an ISO 8601 time with its UTC offset"),
        ("2026-11-01T25:10:00.000+00:00", "an ISO 8601 time with its UTC offset"),
        ("2026-11-01T01:10:00.000+00:00\x00", "an ISO 8601 time with its UTC offset"),
    ],
)
def test_an_impossible_or_unzoned_time_in_a_manifest_is_refused(two_runs, tmp_path, started, reason):
    out, (first, _) = two_runs
    set_started(first, started)
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}")
    assert result.returncode == 1 and not (tmp_path / "gen").exists()
    assert_clean_error(result, f".{first.name}.manifest.json", "started", reason)


def test_a_run_is_never_written_inside_another(onnx_model, testdata, two_runs):
    _, vectors = testdata
    out, (first, second) = two_runs
    before = sorted(p.name for p in first.iterdir())
    result = run("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(first))
    assert result.returncode == 1
    assert_clean_error(result, str(first), "is a run folder itself", f"pass its output root {out}")
    assert sorted(p.name for p in first.iterdir()) == before and runs_in(out) == [first, second]
    assert run("GAN_txt2jpg.py", f"--txt_path={first}", f"--infer_results_path={out.parent / 'gen'}").returncode == 0


def test_a_model_through_a_link_reads_the_data_of_the_folder_it_lies_in(tmp_path):
    """B/m.onnx -> ../A/m.onnx: A's weights.data, never the all-zero weights.data beside the link in B."""
    ours = np.full((100, 784), 0.5, np.float32)
    external_data_model(tmp_path / "A", ours)
    external_data_model(tmp_path / "B", np.zeros((100, 784), np.float32))
    (tmp_path / "B" / "m.onnx").unlink()
    (tmp_path / "B" / "m.onnx").symlink_to("../A/m.onnx")
    vectors = make_vectors(tmp_path / "vectors", 1)
    result = run("run_msame.sh", "--model", str(tmp_path / "B" / "m.onnx"), "--input", str(vectors), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    (run_dir,) = runs_in(tmp_path / "out")
    outputs = np.fromfile(run_dir / "0_output_0.bin", np.float32).reshape(-1, 784)
    np.testing.assert_allclose(outputs, latent(4, seed=0) @ ours, rtol=1e-5)


def test_a_nul_byte_in_an_external_data_location_is_one_line(tmp_path):
    model = external_data_model(tmp_path / "model", np.ones((100, 784), np.float32), "weights\x00.data")
    vectors = make_vectors(tmp_path / "vectors", 1)
    for command in (
        ("run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "out")),
        ("perf_sweep.py", "--model", str(model), "--batch_sizes", "1", "--output", str(tmp_path / "sweep")),
        ("GAN_eval.py", "--images_path", str(vectors), "--classifier", str(model)),
        ("atc_convert.sh", "--onnx", str(model), "--dry_run"),
    ):
        result = run(*command)
        assert result.returncode == 1, command
        assert_clean_error(result, "m.onnx", "NUL")
    assert not (tmp_path / "out").exists() and not (tmp_path / "sweep").exists()


def test_a_nul_byte_in_a_step_record_is_said_by_the_report(pipeline_workdir, tmp_path):
    workdir = tmp_path / "work"
    os.system(f"cp -r {pipeline_workdir[0]} {workdir}")
    record = json.loads((workdir / "compare.json").read_text())
    record["picture"]["path"] = "compare\x00first.png"
    (workdir / "compare.json").write_text(json.dumps(record))
    result = run("GAN_report.py", "--workdir", str(workdir))
    assert "Traceback" not in result.stderr and "embedded null byte" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert "NUL" in (workdir / "report.md").read_text()


def test_an_output_that_is_a_device_or_pipe_is_never_replaced(pipeline_workdir, tmp_path):
    """`--save_json /dev/null` would have renamed a file over the device (as root): a node of /dev/null's kind, made
    here, and a FIFO, stay what they are, and the step refuses in one line before it reports anything."""
    workdir = pipeline_workdir[0]
    device, fifo = tmp_path / "null", tmp_path / "fifo"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(fifo)
    for target in (device, fifo):
        result = run(
            "GAN_compare.py",
            "--online_path",
            str(workdir / "images"),
            "--offline_path",
            str(workdir / "out"),
            "--error_plot",
            "",
            "--save_json",
            str(target),
        )
        assert result.returncode == 1
        assert_clean_error(result, str(target), "device, pipe or socket")
    assert stat.S_ISCHR(os.lstat(device).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "null"], "no temporary file left beside them"


@pytest.mark.parametrize(
    "command", [("perf_calc.py", "--log=--"), ("GAN_compare.py", "--tolerance=--"), ("GAN_eval.py", "--images_path=--")]
)
def test_double_dash_as_a_value_is_no_value(command):
    """argparse reads `--flag=--` as an empty list and skips the flag's type and choices (a traceback further on)."""
    result = run(*command)
    assert result.returncode == 2
    assert_clean_error(result, f"argument {command[1].split('=')[0]}", "'--' is not a value")
