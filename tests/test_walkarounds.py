"""The next ring of mishaps and hostile files (issue 15): aliases and copies of run folders, hand-edited records,
models whose weights live beside them, signals at odd moments, two pipelines at once.

Each test asserts the exit code, that stderr is one line naming the file, and what is (and is not) left on disk.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_faults import PY, make_vectors, manifest_of, run, runs_in, wait_for_outputs

from conftest import ROOT, assert_clean_error, latent, run_script

READERS = (
    lambda out, tmp: ("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp / 'gen'}"),
    lambda out, tmp: ("GAN_eval.py", "--images_path", str(out)),
)


@pytest.fixture
def complete_run(onnx_model, testdata, tmp_path):
    """(images, out, run folder) of a complete TXT run of the test data."""
    images, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out), "--outfmt", "TXT")
    (run_dir,) = runs_in(out)
    return images, out, run_dir


def refused_by_every_reader(out, tmp_path, *must_name, images=None):
    """Every reader of runs refuses `out` in one line naming `must_name`, and writes nothing."""
    commands = [reader(out, tmp_path) for reader in READERS]
    if images is not None:
        commands.append(
            (
                "GAN_compare.py",
                f"--online_path={images}",
                f"--offline_path={out}",
                "--diff_image",
                str(tmp_path / "d.png"),
                "--error_plot",
                str(tmp_path / "e.png"),
            )
        )
    for command in commands:
        result = run(*command)
        assert result.returncode == 1, command
        assert_clean_error(result, *must_name)
    assert not (tmp_path / "gen").exists() and not (tmp_path / "d.png").exists() and not (tmp_path / "e.png").exists(), (
        "nothing written from a refused run"
    )


# ---------------------------------------------------------------------------------------------------------
# 1. The contract cannot be walked around.


def test_an_output_swapped_for_another_of_the_same_size_is_refused(complete_run, tmp_path):
    images, out, run_dir = complete_run
    first, second = run_dir / "0_output_0.txt", run_dir / "1_output_0.txt"
    text = second.read_text()
    first.write_text(text[: first.stat().st_size].ljust(first.stat().st_size))  # same size, other content
    refused_by_every_reader(out, tmp_path, first, "the same size but other content (sha256)", images=images)


def test_an_output_rewritten_in_place_is_refused(complete_run, tmp_path):
    images, out, run_dir = complete_run
    output = run_dir / "2_output_0.txt"
    data = bytearray(output.read_bytes())
    data[5] = ord("9") if data[5] != ord("9") else ord("8")  # one digit
    output.write_bytes(bytes(data))
    refused_by_every_reader(out, tmp_path, output, "other content", images=images)


def test_an_output_swapped_for_a_link_is_refused(complete_run, tmp_path):
    images, out, run_dir = complete_run
    output = run_dir / "1_output_0.txt"
    elsewhere = tmp_path / "elsewhere.txt"
    shutil.copy(output, elsewhere)
    output.unlink()
    output.symlink_to(elsewhere)  # the same bytes, through a link
    refused_by_every_reader(out, tmp_path, output, "symbolic link", images=images)


def test_a_link_to_a_killed_run_is_read_as_that_run(onnx_model, complete_run, tmp_path):
    images, out, _ = complete_run
    many = make_vectors(tmp_path / "many", 300, rows=64)
    process = subprocess.Popen(
        [PY, str(ROOT / "msame_onnxruntime.py"), "--model", str(onnx_model), "--input", str(many), "--output", str(out), "--outfmt", "TXT"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = wait_for_outputs(out, 5)
    process.kill()
    process.wait()
    latest = tmp_path / "latest"
    latest.symlink_to(killed)  # out/latest would be the same; here beside, so that out/ itself is tested below
    for reader in READERS:
        assert_clean_error(run(*reader(latest, tmp_path)), killed, "incomplete run, never completed")
    for reader in READERS:  # `--txt_path .` inside the killed run
        command = reader(Path("."), tmp_path)
        assert_clean_error(run(*command, cwd=killed), killed, "incomplete run")
    (out / "latest").symlink_to(killed)
    assert_clean_error(run(*READERS[0](out, tmp_path)), out / "latest", "a symbolic link among the run folders")
    assert not (tmp_path / "gen").exists()


def test_a_copy_of_out_chooses_the_same_run(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    for _ in range(2):
        run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    older, newer = runs_in(out)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # new modification times, the older run's the newest
    os.utime(copy / newer.name, (time.time() - 3600, time.time() - 3600))
    for root in (out, copy):
        result = run_script("GAN_txt2jpg.py", f"--txt_path={root}", f"--infer_results_path={tmp_path / (root.name + '_gen')}")
        assert f"{root / newer.name} (complete run" in result.stdout


def test_a_complete_manifest_over_an_empty_folder_is_refused(complete_run, tmp_path):
    images, out, run_dir = complete_run
    for output in run_dir.iterdir():
        output.unlink()
    manifest = manifest_of(run_dir)
    manifest["outputs"] = {}
    (out / f".{run_dir.name}.manifest.json").write_text(json.dumps(manifest))
    refused_by_every_reader(out, tmp_path, "a complete run with no outputs recorded", images=images)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda m: m.update(outputs=list(m["outputs"])), "outputs should be an object"),
        (lambda m: m.update(status="done"), 'status should be one of "running", "complete", "failed"'),
        (lambda m: m["outputs"]["0_output_0.txt"].update(sha256="abc"), "should be a sha256"),
        (lambda m: m.update(started=17), "started should be an ISO 8601 time"),
        (lambda m: m.update(format="gan-offline-run/1"), "format should be one of"),
    ],
)
def test_a_hand_edited_manifest_is_refused_in_one_line(complete_run, tmp_path, edit, reason):
    images, out, run_dir = complete_run
    manifest = manifest_of(run_dir)
    edit(manifest)
    path = out / f".{run_dir.name}.manifest.json"
    path.write_text(json.dumps(manifest))
    refused_by_every_reader(out, tmp_path, path, "not a valid run manifest", reason, images=images)


@pytest.mark.parametrize("kind", ["fifo", "link", "folder", "huge", "nested"])
def test_a_manifest_that_is_not_a_regular_json_file_is_refused(complete_run, tmp_path, kind):
    images, out, run_dir = complete_run
    path = out / f".{run_dir.name}.manifest.json"
    saved = tmp_path / "saved.json"
    shutil.move(path, saved)
    expected = {
        "fifo": "not a regular file",
        "link": "is a symbolic link",
        "folder": "is a folder",
        "huge": "more than a run manifest can be",
        "nested": "nested too deeply",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)  # never waited on
    elif kind == "link":
        path.symlink_to(saved)
    elif kind == "folder":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(65 * 1024 * 1024)
    else:
        path.write_text("[" * 100000 + "]" * 100000)
    started = time.time()
    refused_by_every_reader(out, tmp_path, path, expected)
    assert time.time() - started < 60, "no reader waited on it"


# ---------------------------------------------------------------------------------------------------------
# 3. Models are read with their own folder.


def external_data_model(folder, weights, location="weights.data"):
    """A (batch, 100) -> (batch, 784) model whose weights live in `location`, beside the model in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["Z", "W"], ["generateimg"])],
        "g",
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("generateimg", TensorProto.FLOAT, ["batch", 784])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location="weights.data", size_threshold=0)
    if location != "weights.data":
        saved = onnx.load(str(folder / "m.onnx"), load_external_data=False)
        for tensor in saved.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        (folder / "m.onnx").write_bytes(saved.SerializeToString())
    return folder / "m.onnx"


def test_external_data_comes_from_the_model_s_folder_not_the_working_directory(tmp_path):
    ours, other = np.full((100, 784), 1.0, np.float32), np.full((100, 784), 7.0, np.float32)
    model = external_data_model(tmp_path / "model", ours)
    external_data_model(tmp_path / "elsewhere", other)  # a different weights.data in the working directory
    vectors = make_vectors(tmp_path / "vectors", 1)
    result = run(
        "run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "out"), cwd=tmp_path / "elsewhere"
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = runs_in(tmp_path / "out")
    outputs = np.fromfile(run_dir / "0_output_0.bin", np.float32).reshape(-1, 784)
    np.testing.assert_allclose(outputs, latent(4, seed=0) @ ours, rtol=1e-5)


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "sub/../../outside.data", "link.data"])
def test_external_data_outside_the_model_s_folder_is_refused(tmp_path, location):
    model = external_data_model(tmp_path / "model", np.ones((100, 784), np.float32), location)
    shutil.copy(tmp_path / "model" / "weights.data", tmp_path / "outside.data")
    if location == "link.data":
        (tmp_path / "model" / "link.data").symlink_to(tmp_path / "outside.data")  # inside by name, outside in fact
    vectors = make_vectors(tmp_path / "vectors", 1)
    result = run("run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "out"))
    assert result.returncode == 1 and assert_clean_error(result, model, "lies outside the model's folder")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype, name", [(TensorProto.FLOAT16, "float16"), (TensorProto.INT64, "int64")])
def test_a_model_input_of_another_dtype_is_refused_before_a_run(tmp_path, dtype, name):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["Z"], ["x"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("Z", dtype, ["batch", 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 784])],
        [numpy_helper.from_array(np.ones((100, 784), np.float32), "W")],
    )
    model = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(model))
    vectors = make_vectors(tmp_path / "vectors", 1)
    result = run("run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "out"))
    assert result.returncode == 1 and assert_clean_error(result, model, "expected one float32 input", f"tensor({name})")
    assert not (tmp_path / "out").exists(), "no failed run folder left behind"


# ---------------------------------------------------------------------------------------------------------
# 5. Signals from the first instant; one pipeline per workdir.


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_torch_loads_ends_in_one_line(checkpoint, tmp_path, signum):
    process = subprocess.Popen(
        [
            PY,
            str(ROOT / "GAN_testdata.py"),
            f"--online_path={tmp_path / 'i'}",
            f"--offline_path={tmp_path / 'v'}",
            f"--pth_path={checkpoint}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and "torch" not in Path(f"/proc/{process.pid}/maps").read_text(errors="replace"):
        time.sleep(0.005)  # until torch starts to load: the script's first lines have run, its slow imports have not
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0] == f"GAN_testdata.py: error: interrupted by {name} while starting; nothing was done" or (
        lines[0].startswith(f"GAN_testdata.py: error: interrupted by {name}")  # a very fast machine: torch was already in
    )
    assert not (tmp_path / "i").exists() and not (tmp_path / "v").exists()


def pipeline(checkpoint, workdir, *extra):
    return subprocess.Popen(
        [
            "bash",
            str(ROOT / "run_pipeline.sh"),
            "--pth",
            str(checkpoint),
            "--workdir",
            str(workdir),
            "--iters",
            "3",
            "--batch_size",
            "4",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def loading_torch(pids):
    """Whether one of `pids` has started to load torch (its first lines, the signal handlers, have run)."""
    for pid in pids:
        try:
            if "torch" in Path(f"/proc/{pid}/maps").read_text(errors="replace"):
                return True
        except OSError:
            pass
    return False


def processes_with(marker):
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return [pid for pid in found if int(pid) != os.getpid()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_run_pipeline_reaches_its_step(checkpoint, tmp_path, signum):
    workdir = tmp_path / f"work_{signum}"
    process = pipeline(checkpoint, workdir)
    deadline = time.time() + 60
    while not loading_torch(processes_with(f"GAN_pth2onnx.py.*{workdir}")) and time.time() < deadline:
        time.sleep(0.02)  # the export step has started (its handlers are in place): it is loading torch
    process.send_signal(signum)  # to the script's PID only, as `kill PID` does
    stdout, stderr = process.communicate(timeout=60)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_pipeline.sh (export): error: interrupted by ") and name in lines[0], stderr
    assert not processes_with(str(workdir)), "no step outlives the script"
    time.sleep(2)
    assert not (workdir / "GAN.onnx").exists() and not (workdir / "vectors").exists(), "no later step ran, nothing written after"
    steps = (workdir / "steps.tsv").read_text().splitlines()
    assert steps[1].split("\t")[:2] == ["export", f"interrupted ({name})"] and len(steps) == 2


def test_two_pipelines_into_one_workdir(checkpoint, tmp_path):
    workdir = tmp_path / "shared"
    first, second = pipeline(checkpoint, workdir), pipeline(checkpoint, workdir)
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, _, err in results if code == 1)
    assert (
        refused.strip().splitlines()
        == [
            f"run_pipeline.sh: error: {workdir}: another run_pipeline.sh is writing into it (it holds {workdir}/.pipeline.lock): "
            f"wait for it, or pass another --workdir"
        ]
        or "is not an empty folder" in refused
    )
    steps = (workdir / "steps.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in steps[1:]] == ["export", "testdata", "offline", "txt2jpg", "compare", "eval", "perf", "report"]


def test_a_workdir_that_cannot_be_made_is_one_line(checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("run_pipeline.sh", "--pth", str(checkpoint), "--workdir", str(blocker / "work"))
    assert result.returncode == 1 and assert_clean_error(result, blocker / "work", "cannot create the work folder", "Not a directory")


# ---------------------------------------------------------------------------------------------------------
# 6. Smaller, same spirit.


def test_sweep_checks_its_device_list_and_memory_before_any_work(onnx_model, tmp_path):
    bad = run("perf_sweep.py", "--model", str(onnx_model), "--output", str(tmp_path / "sw"), "--device", "0,x")
    assert bad.returncode == 2 and assert_clean_error(bad, "--device", "0,x")
    huge = run("perf_sweep.py", "--model", str(onnx_model), "--output", str(tmp_path / "sw"), "--batch_sizes", "3000000")
    assert huge.returncode == 1 and assert_clean_error(huge, "--batch_sizes 3000000", "GiB of memory", "GiB is available")
    assert not (tmp_path / "sw").exists(), "nothing left behind"


def test_the_runner_checks_memory_before_a_huge_batch(onnx_model, tmp_path):
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    with open(vectors / "0.bin", "wb") as f:  # 20 million rows, sparse: no disk used
        f.truncate(20_000_000 * 400)
    result = run("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"))
    assert result.returncode == 1 and assert_clean_error(result, vectors / "0.bin", "20,000,000 rows", "GiB of memory")
    assert not (tmp_path / "out").exists()


def test_eval_refuses_idx_images_that_are_not_28x28(tmp_path, testdata):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    header = (2051).to_bytes(4, "big") + (5).to_bytes(4, "big") + (14).to_bytes(4, "big") + (14).to_bytes(4, "big")
    (raw / "train-images-idx3-ubyte").write_bytes(header + bytes(5 * 14 * 14))
    (raw / "train-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(5))
    result = run("GAN_eval.py", "--real_mnist", str(tmp_path / "data"), "--real_samples", "2")
    assert result.returncode == 1 and assert_clean_error(result, raw / "train-images-idx3-ubyte", "14x14", "28x28")
