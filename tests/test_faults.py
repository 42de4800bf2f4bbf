"""Fault injection: every class of mishap in issue 9, at least two cases each.

Each test asserts the exit code, that stderr is one line naming the file, and what is (and is not) left on
disk. Full disk: a 256 KiB tmpfs where this machine lets root mount one (it does here and in CI), else
RLIMIT_FSIZE (ulimit -f), which fails writes with EFBIG instead of ENOSPC; `small_disk` says which.
Unreadable files: the step runs under setpriv with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped, so
root's bypass of file permissions does not hide the fault (skipped, with the reason, where setpriv cannot).
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_ascend_tools import env_with

from conftest import ROOT, assert_clean_error, latent, partial_files, random_generator, run_script

PY = sys.executable
SETPRIV = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def run(*command, env=None, preexec=None, cwd=None):
    """Run a project script with any arguments (bytes allowed), as a user would; never raises on failure."""
    script = ROOT / command[0]
    argv = (["bash", str(script)] if command[0].endswith(".sh") else [PY, str(script)]) + list(command[1:])
    return subprocess.run(argv, capture_output=True, env=env, preexec_fn=preexec, cwd=cwd, text=True, errors="surrogateescape")


def unprivileged(*command):
    """The same, under setpriv without the capabilities that let root read and write anything."""
    script = ROOT / command[0]
    return subprocess.run(SETPRIV + [PY, str(script), *command[1:]], capture_output=True, text=True)


def manifest_of(run_dir):
    return json.loads((run_dir.parent / f".{run_dir.name}.manifest.json").read_text())


def runs_in(root):
    return sorted(p for p in Path(root).iterdir() if not p.name.startswith("."))


def make_vectors(folder, count, rows=4):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        latent(rows, seed=i).tofile(folder / f"{i}.bin")
    return folder


class Payload:
    """A pickle that runs a shell command when it is unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def small_disk(tmp_path):
    """(folder, preexec, how): a folder whose writes run out of room."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode == 0:
        yield folder, None, "No space left on device"
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    else:
        print(f"no tmpfs ({mounted.stderr.decode().strip()}): RLIMIT_FSIZE of 64 KiB instead")
        yield folder, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)), "File too large"


@pytest.fixture(scope="module")
def setpriv_works(tmp_path_factory):
    probe = tmp_path_factory.mktemp("setpriv") / "locked"
    probe.write_text("x")
    probe.chmod(0)
    try:
        result = subprocess.run(SETPRIV + ["cat", str(probe)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("setpriv is not installed (util-linux): cannot drop root's file-permission bypass")
    if result.returncode == 0:
        pytest.skip("setpriv could not drop CAP_DAC_OVERRIDE here: an unreadable file stays readable to root")
    return True


@pytest.fixture(scope="module")
def nan_model(onnx_model, tmp_path_factory):
    """GAN.onnx with one NaN in the last layer's bias: every output image holds a NaN."""
    model = onnx.load(str(onnx_model))
    bias = next(t for t in model.graph.initializer if list(t.dims) == [784])
    values = numpy_helper.to_array(bias).copy()
    values[0] = np.nan
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    path = tmp_path_factory.mktemp("nan") / "GAN_nan.onnx"
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------------------
# 1. Untrusted files run no code.


def test_hostile_checkpoints_run_no_code(tmp_path, checkpoint):
    marker = tmp_path / "PWNED"
    hostile = tmp_path / "hostile.pt"
    torch.save({"generator": Payload(marker), "epoch": 0}, hostile)
    (tmp_path / "data").mkdir()
    result = run("tools/GAN_train.py", "--data_root", str(tmp_path / "data"), "--output", str(tmp_path / "g.pth"), "--resume", str(hostile))
    assert_clean_error(result, hostile, "not a readable PyTorch checkpoint")
    result = run("GAN_pth2onnx.py", f"--input_file={hostile}", f"--output_file={tmp_path / 'x.onnx'}")
    assert_clean_error(result, hostile, "not a readable PyTorch checkpoint")
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "g.pth").exists()


def test_hostile_reference_stats_run_no_code(tmp_path, testdata):
    images, _ = testdata
    marker = tmp_path / "PWNED"
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.array([Payload(marker)], dtype=object), cov=np.eye(2))
    result = run("GAN_eval.py", "--images_path", str(images), "--reference_stats", str(stats))
    assert_clean_error(result, stats, "not the reference statistics")
    assert not marker.exists(), "the payload ran"


def test_hostile_input_name_in_printed_atc_commands(tmp_path):
    hostile_name = 'Z";touch X;echo "'
    path = tmp_path / "hostile.onnx"
    torch.onnx.export(
        torch.nn.Linear(100, 784),
        torch.zeros(1, 100),
        str(path),
        input_names=[hostile_name],
        opset_version=11,
        dynamic_axes={hostile_name: {0: "batch"}},
        dynamo=False,
    )
    printed = run_script("atc_convert.sh", "--onnx", str(path), "--dry_run", "--batch_sizes", "1 16").stdout.strip().splitlines()
    assert len(printed) == 3 and printed[0].startswith("# check: "), "the check, as a shell comment, then two commands"
    # paste each line into a shell whose `atc` only records its arguments
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "atc").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done >> "$ATC_ARGS"\n')
    (fake / "atc").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", ATC_ARGS=str(tmp_path / "args"))
    for line in printed:
        subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, check=True)
    assert not (tmp_path / "X").exists(), "the pasted command ran `touch X`"
    shapes = [a for a in (tmp_path / "args").read_text().splitlines() if a.startswith("--input_shape=")]
    assert shapes == [f"--input_shape={hostile_name}:1,100", f"--input_shape={hostile_name}:16,100"]


# ---------------------------------------------------------------------------------------------------------
# 2. Incomplete or stale runs are never read as results.


def test_killed_run_is_refused_not_an_older_one(onnx_model, testdata, tmp_path):
    images, _ = testdata
    vectors = make_vectors(tmp_path / "vectors", 3)
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out), "--outfmt", "TXT")
    many = make_vectors(tmp_path / "many", 400, rows=64)
    process = subprocess.Popen(
        [PY, str(ROOT / "msame_onnxruntime.py"), "--model", str(onnx_model), "--input", str(many), "--output", str(out), "--outfmt", "TXT"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = wait_for_outputs(out, 10)
    process.kill()
    process.wait()
    assert manifest_of(killed)["status"] == "running"
    for command in (
        ("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}"),
        ("GAN_eval.py", "--images_path", str(out)),
        ("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", ""),
    ):
        line = assert_clean_error(run(*command), killed, "incomplete run, never completed", "which is gone")
        assert f"of {400} outputs present" in line
    assert not (tmp_path / "gen").exists(), "nothing written from an incomplete run"


def wait_for_outputs(out, count, timeout=60):
    """The newest run folder under `out` once it holds at least `count` outputs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = runs_in(out) if out.exists() else []
        if runs and len([p for p in runs[-1].iterdir() if not p.name.startswith(".")]) >= count:
            return runs[-1]
        time.sleep(0.02)
    raise AssertionError(f"no run under {out} reached {count} outputs")


def test_empty_newest_run_and_loose_files(testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    older = out / "2021925_8_7_6_1"
    older.mkdir(parents=True)
    for i in range(3):
        shutil.copy(images / f"{i}.bin", older / f"{i}_output_0.bin")
    os.utime(older, (time.time() - 60, time.time() - 60))
    empty = out / "2021926_8_7_6_12345"  # a newer msame run that wrote nothing
    empty.mkdir()
    result = run("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", "")
    assert_clean_error(result, empty, "holds no output files")
    empty.rmdir()
    passed = run("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", "")
    assert passed.returncode == 0 and "no manifest" in passed.stdout, "a hand-made msame run is read, and said so"
    shutil.copy(images / "0.bin", out / "0_output_0.bin")  # a loose output beside the run folders
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}")
    assert_clean_error(result, out, "holds output files itself and run folders")
    assert not (tmp_path / "gen").exists()


def test_full_disk_runner_leaves_an_incomplete_run(onnx_model, tmp_path, small_disk):
    folder, preexec, reason = small_disk
    vectors = make_vectors(tmp_path / "vectors", 30, rows=16)  # 120 KB of TXT each: over 64 KiB, two fit in 256 KiB
    result = run(
        "msame_onnxruntime.py",
        "--model",
        str(onnx_model),
        "--input",
        str(vectors),
        "--output",
        str(folder / "out"),
        "--outfmt",
        "TXT",
        preexec=preexec,
    )
    line = assert_clean_error(result, "_output_0.txt", reason)
    (run_dir,) = runs_in(folder / "out")
    assert str(run_dir) in line and manifest_of(run_dir)["status"] != "complete"
    assert not partial_files(folder)
    assert_clean_error(
        run("GAN_txt2jpg.py", f"--txt_path={folder / 'out'}", f"--infer_results_path={tmp_path / 'gen'}"), run_dir, "incomplete run"
    )


def test_run_changed_after_it_completed(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    (run_dir,) = runs_in(out)
    (run_dir / "1_output_0.bin").unlink()
    assert_clean_error(
        run("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", ""),
        run_dir / "1_output_0.bin",
        "listed in the run's manifest but missing",
    )
    (run_dir / "1_output_0.bin").write_bytes(b"\0" * 16)
    assert_clean_error(run("GAN_eval.py", "--images_path", str(out)), run_dir / "1_output_0.bin", "16 bytes", "recorded")


# ---------------------------------------------------------------------------------------------------------
# 3. No input is ever destroyed.


def test_export_never_writes_over_its_checkpoint(checkpoint, tmp_path):
    pth = tmp_path / "g.pth"
    shutil.copy(checkpoint, pth)
    before = pth.read_bytes()
    assert_clean_error(run("GAN_pth2onnx.py", f"--input_file={pth}", f"--output_file={pth}"), pth, "same path as --input_file")
    (tmp_path / "alias.onnx").symlink_to(pth)
    assert_clean_error(run("GAN_pth2onnx.py", f"--input_file={pth}", f"--output_file={tmp_path / 'alias.onnx'}"), "same path")
    os.link(pth, tmp_path / "hard.onnx")
    assert_clean_error(run("GAN_pth2onnx.py", f"--input_file={pth}", f"--output_file={tmp_path / 'hard.onnx'}"), "same path")
    result = run(
        "GAN_pth2onnx.py",
        f"--input_file={pth}",
        f"--output_file={tmp_path / 'g.onnx'}",
        "--quantize",
        "int8",
        f"--int8_file={tmp_path / 'g.onnx'}",
    )
    assert_clean_error(result, "--output_file and --int8_file are the same path")
    assert pth.read_bytes() == before and not (tmp_path / "g.onnx").exists()


def test_failed_export_check_keeps_the_previous_model(checkpoint, onnx_model, tmp_path):
    model = tmp_path / "GAN.onnx"
    shutil.copy(onnx_model, model)
    before = model.read_bytes()
    result = run("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={model}", "--max_diff", "0")
    assert_clean_error(result, model, "differs from PyTorch", "not written", "unchanged")
    assert model.read_bytes() == before and not partial_files(tmp_path)


def test_testdata_and_compare_never_write_over_their_inputs(checkpoint, testdata, onnx_model, tmp_path):
    images, vectors = testdata
    folder = make_vectors(tmp_path / "same", 2)
    before = (folder / "0.bin").read_bytes()
    result = run("GAN_testdata.py", f"--pth_path={checkpoint}", f"--online_path={folder}", f"--offline_path={folder}")
    assert_clean_error(result, folder, "--online_path and --offline_path are the same path")
    assert (folder / "0.bin").read_bytes() == before
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    online_before = (images / "0.bin").read_bytes()
    result = run(
        "GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", str(images / "0.bin"), "--error_plot", ""
    )
    assert_clean_error(result, images / "0.bin", "lies inside the input folder --online_path")
    assert (images / "0.bin").read_bytes() == online_before
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={out}")
    assert_clean_error(result, "same path as --txt_path")
    assert [p.name for p in runs_in(out)] == [runs_in(out)[0].name] and not list(out.glob("*.jpg"))


# ---------------------------------------------------------------------------------------------------------
# 4. Non-finite values are errors where they make a result meaningless.


def test_nan_checkpoints_are_refused(tmp_path):
    state = random_generator().state_dict()
    state["model.6.running_var"][3] = float("nan")
    nan_pth = tmp_path / "nan.pth"
    torch.save(state, nan_pth)
    assert_clean_error(
        run("GAN_pth2onnx.py", f"--input_file={nan_pth}", f"--output_file={tmp_path / 'a.onnx'}"),
        nan_pth,
        "non-finite weights",
        "model.6.running_var",
    )
    huge = random_generator().state_dict()
    huge["model.2.weight"][:] = 3e38  # finite weights whose outputs are not: Inf from the sum, then Inf x 0 in BatchNorm
    huge["model.3.weight"][:] = 0.0
    huge_pth = tmp_path / "huge.pth"
    torch.save(huge, huge_pth)
    result = run("GAN_pth2onnx.py", f"--input_file={huge_pth}", f"--output_file={tmp_path / 'b.onnx'}")
    assert_clean_error(result, huge_pth, "non-finite values", "nothing written")
    assert not list(tmp_path.glob("*.onnx"))


def test_nan_outputs_are_counted_by_the_runner_and_refused_by_readers(nan_model, testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    result = run("run_msame.sh", "--model", str(nan_model), "--input", str(vectors), "--output", str(out), "--outfmt", "TXT")
    assert result.returncode == 0, "the runner computes what it is given, as msame does"
    assert "[WARN] outputs holding non-finite values (NaN or Inf): 3 of 3" in result.stdout
    (run_dir,) = runs_in(out)
    assert manifest_of(run_dir)["nonfinite_outputs"] == ["0_output_0.txt", "1_output_0.txt", "2_output_0.txt"]
    bad = run_dir / "0_output_0.txt"
    assert_clean_error(run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}"), bad, "not finite")
    assert not list((tmp_path / "gen").glob("*.jpg")) if (tmp_path / "gen").exists() else True
    assert_clean_error(
        run("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", ""), bad, "not finite"
    )
    assert_clean_error(run("GAN_eval.py", "--images_path", str(out)), bad, "not finite")


def test_one_nan_input_is_counted(onnx_model, tmp_path):
    vectors = make_vectors(tmp_path / "vectors", 3)
    z = latent(4, seed=1)
    z[2, 5] = np.nan
    z.tofile(vectors / "1.bin")
    result = run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"))
    assert "non-finite values (NaN or Inf): 1 of 3 (1_output_0.bin)" in result.stdout


# ---------------------------------------------------------------------------------------------------------
# 5. Every fault is one line: full disks, unreadable files, bad paths, sizes JPEG cannot hold.


def test_full_disk_in_every_writer(checkpoint, onnx_model, testdata, tmp_path, small_disk):
    folder, preexec, reason = small_disk
    images, vectors = testdata
    result = run("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={folder / 'GAN.onnx'}", preexec=preexec)
    assert_clean_error(result, folder / "GAN.onnx", reason)
    result = run(
        "GAN_testdata.py",
        f"--pth_path={checkpoint}",
        f"--online_path={folder / 'images'}",
        f"--offline_path={tmp_path / 'v'}",
        "--iters",
        "20",
        "--batch_size",
        "32",
        preexec=preexec,
    )
    assert_clean_error(result, folder / "images", reason)
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out), "--outfmt", "TXT")
    big = tmp_path / "big"
    make_vectors(big, 2, rows=512)
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(big), "--output", str(tmp_path / "big_out"))
    result = run("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'big_out'}", f"--infer_results_path={folder / 'gen'}", preexec=preexec)
    assert_clean_error(result, folder / "gen", reason)
    assert not partial_files(folder) and not partial_files(tmp_path / "v")


def test_unreadable_files_and_folders(onnx_model, testdata, tmp_path, setpriv_works):
    images, vectors = testdata
    locked = make_vectors(tmp_path / "vectors", 2)
    (locked / "1.bin").chmod(0)
    result = unprivileged("msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(locked), "--output", str(tmp_path / "out"))
    assert_clean_error(result, locked / "1.bin", "Permission denied")
    (locked / "1.bin").chmod(0o644)
    locked.chmod(0)
    result = unprivileged("msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(locked), "--output", str(tmp_path / "out"))
    assert_clean_error(result, locked, "Permission denied")
    locked.chmod(0o755)
    out = tmp_path / "out2"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    online = tmp_path / "images"
    shutil.copytree(images, online)
    (online / "2.bin").chmod(0)
    result = unprivileged("GAN_compare.py", f"--online_path={online}", f"--offline_path={out}", "--diff_image", "", "--error_plot", "")
    assert_clean_error(result, online / "2.bin", "Permission denied")
    (runs_in(out)[0]).chmod(0)
    result = unprivileged("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}")
    assert_clean_error(result, runs_in(out)[0], "Permission denied")
    runs_in(out)[0].chmod(0o755)
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    result = unprivileged("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={readonly}")
    assert_clean_error(result, readonly, "not writable")


def test_full_disk_under_standard_output(onnx_model, testdata, tmp_path, small_disk):
    folder, preexec, reason = small_disk
    images, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    log = open(folder / "compare.log", "w")
    if preexec is None:
        fill(folder)
    else:  # RLIMIT_FSIZE applies to every file a process writes, its redirected stdout included
        preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))  # noqa: E731
    with log:
        result = subprocess.run(
            [PY, str(ROOT / "GAN_compare.py"), f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", ""],
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"GAN_compare.py: error: standard output: {reason}"], result.stderr


def fill(folder):
    """Fill a small file system to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_diff_image_paths(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    result = run(
        "GAN_compare.py",
        f"--online_path={images}",
        f"--offline_path={out}",
        "--diff_image",
        str(tmp_path / "new" / "d.png"),
        "--error_plot",
        "",
    )
    assert result.returncode == 0 and (tmp_path / "new" / "d.png").is_file(), "a missing folder is created"
    (tmp_path / "a_folder").mkdir()
    result = run(
        "GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", str(tmp_path / "a_folder"), "--error_plot", ""
    )
    assert_clean_error(result, tmp_path / "a_folder", "is a folder; expected a file path")


def test_bad_classifier_and_reference_stats(testdata, tmp_path):
    images, _ = testdata
    text = tmp_path / "classifier.onnx"
    text.write_text("not a model")
    assert_clean_error(run("GAN_eval.py", "--images_path", str(images), "--classifier", str(text)), text, "not a loadable classifier")
    other = tmp_path / "other.onnx"
    torch.onnx.export(torch.nn.Linear(784, 10), torch.zeros(1, 784), str(other), opset_version=13, dynamo=False)
    assert_clean_error(run("GAN_eval.py", "--images_path", str(images), "--classifier", str(other)), other, "not the digit classifier")
    garbage = tmp_path / "stats.npz"
    garbage.write_bytes(b"PK\x03\x04garbage")
    assert_clean_error(
        run("GAN_eval.py", "--images_path", str(images), "--reference_stats", str(garbage)), garbage, "not the reference statistics"
    )
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(5), cov=np.eye(5))
    assert_clean_error(
        run("GAN_eval.py", "--images_path", str(images), "--reference_stats", str(wrong)), wrong, "expected finite mu (128,)"
    )


def test_paths_that_are_not_utf8(checkpoint, testdata, tmp_path):
    images, vectors = testdata
    folder = os.path.join(os.fsencode(tmp_path), b"mod\xffels")
    os.mkdir(folder)
    model = os.path.join(folder, b"G\xfe.onnx")
    result = subprocess.run(
        [PY, str(ROOT / "GAN_pth2onnx.py"), f"--input_file={checkpoint}".encode(), b"--output_file=" + model], capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert os.path.isfile(model) and model in result.stdout, "written, and its name printed as the bytes it is"
    out = os.path.join(os.fsencode(tmp_path), b"o\xffut")
    result = subprocess.run(
        [PY, str(ROOT / "msame_onnxruntime.py"), b"--model", model, b"--input", os.fsencode(vectors), b"--output", out], capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Execute sample success" in result.stdout
    assert len(os.listdir(out)) == 3, "the run folder, its manifest and its summary"


def test_batches_too_large_for_memory_or_arguments_out_of_range(checkpoint, onnx_model, tmp_path):
    result = run(
        "GAN_testdata.py",
        f"--pth_path={checkpoint}",
        f"--online_path={tmp_path / 'i'}",
        f"--offline_path={tmp_path / 'v'}",
        "--batch_size",
        "100000000",
        "--no_jpg",
    )
    assert_clean_error(result, "--batch_size 100000000", "GiB of memory", "is available")
    assert not (tmp_path / "i").exists()
    result = run("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={tmp_path / 'g.onnx'}", "--max_diff", "nan")
    assert result.returncode == 2 and "--max_diff" in result.stderr and not (tmp_path / "g.onnx").exists()
    result = run(
        "msame_driver.py", "--model", str(onnx_model), "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--features", "0"
    )
    assert result.returncode == 2 and "--features" in result.stderr and "Traceback" not in result.stderr


def test_grids_too_large_for_jpeg(checkpoint, onnx_model, tmp_path):
    result = run(
        "GAN_testdata.py",
        f"--pth_path={checkpoint}",
        f"--online_path={tmp_path / 'i'}",
        f"--offline_path={tmp_path / 'v'}",
        "--batch_size",
        "20000",
    )
    assert_clean_error(result, "a grid of 20000 images", "75002 pixels tall", "17464")
    assert not (tmp_path / "i").exists() and not (tmp_path / "v").exists(), "refused before anything is written"
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    latent(4).tofile(vectors / "0.bin")
    latent(17472).tofile(vectors / "1.bin")  # one row of grid too many
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={tmp_path / 'gen'}")
    assert_clean_error(result, tmp_path / "gen" / "1.jpg", "over JPEG's limit")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["0.jpg"], "no file of the refused batch"


# ---------------------------------------------------------------------------------------------------------
# 6. Processes die with their run; signals leave no temporary file.


def descendants(pid):
    """Every process whose parent chain leads to `pid` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def process_state(pid):
    """`state S, wchan do_wait, threads 3, children [..]`: where a process is, for a failure's message."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    return f"state {fields[0]}, wchan {wchan}, threads {threads}, cmdline {cmdline[:200]}"


def running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pids, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and any(running(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if running(p)]


def test_killed_card_run_leaves_no_worker(onnx_model, tmp_path):
    many = make_vectors(tmp_path / "many", 400, rows=64)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            PY,
            str(ROOT / "msame_onnxruntime.py"),
            "--model",
            str(onnx_model),
            "--input",
            str(many),
            "--output",
            str(out),
            "--outfmt",
            "TXT",
            "--device",
            "0,1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_dir = wait_for_outputs(out, 20)
    workers = descendants(process.pid)
    assert len(workers) >= 2, "two worker processes were running"
    process.kill()
    process.wait()
    assert wait_until_gone(workers) == [], "workers outlived their parent"
    written = len(list(run_dir.iterdir()))
    time.sleep(1.0)
    assert len(list(run_dir.iterdir())) == written < 400, "nothing more was written after the kill"
    assert manifest_of(run_dir)["status"] == "running"


def test_killed_driver_leaves_no_msame(om_for_faults, tmp_path):
    vectors = make_vectors(tmp_path / "vectors", 6)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            "bash",
            str(ROOT / "run_msame.sh"),
            "--model",
            str(om_for_faults),
            "--input",
            str(vectors),
            "--output",
            str(out),
            "--device",
            "0,1",
        ],
        env=env_with(MSAME_DOUBLE_DELAY="4", PYTHONFAULTHANDLER="1"),  # a SIGABRT below prints where the driver is
        stdout=(tmp_path / "driver.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 90  # a loaded CI machine can take tens of seconds to start two Python processes
    while time.time() < deadline and process.poll() is None and len(descendants(process.pid)) < 2:
        time.sleep(0.05)
    tools = descendants(process.pid)
    state = process_state(process.pid)
    if len(tools) < 2 and process.poll() is None:  # stuck: its Python stack, from faulthandler, into its log
        process.send_signal(signal.SIGABRT)
        process.wait(30)
    driver_log = (tmp_path / "driver.log").read_text(errors="replace")
    assert len(tools) >= 2, f"one msame per device was running (driver {state}):\n{driver_log}"
    process.kill()
    process.wait()
    assert wait_until_gone(tools) == [], "msame outlived the driver"
    (run_dir,) = runs_in(out)
    assert manifest_of(run_dir)["status"] == "running" and not list(run_dir.iterdir())


@pytest.fixture(scope="module")
def om_for_faults(onnx_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("om_faults")
    run_script("atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(folder / "GAN_bs"), "--batch_sizes", "4", env=env_with())
    return folder / "GAN_bs4.om"


@pytest.mark.parametrize("devices", ["0", "0,1"])
def test_sigterm_mid_run_removes_temporary_files(onnx_model, tmp_path, devices):
    many = make_vectors(tmp_path / "many", 400, rows=64)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            PY,
            str(ROOT / "msame_onnxruntime.py"),
            "--model",
            str(onnx_model),
            "--input",
            str(many),
            "--output",
            str(out),
            "--outfmt",
            "TXT",
            "--device",
            devices,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = wait_for_outputs(out, 20)
    workers = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines() == [
        "msame_onnxruntime.py: error: interrupted by SIGTERM; temporary files removed, nothing reported as done"
    ]
    assert wait_until_gone(workers) == [] and not partial_files(out)
    manifest = manifest_of(run_dir)
    assert manifest["status"] == "failed" and "SIGTERM" in manifest["error"]


def test_stale_parts_are_ignored_and_swept(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    (run_dir,) = runs_in(out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = run_dir / f".3_output_0.bin.{dead.pid}.abcdefgh.part"  # what a SIGKILL mid-write leaves
    stale.write_bytes(b"\0" * 100)
    assert run("GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", "").returncode == 0
    gen = tmp_path / "gen"
    gen.mkdir()
    stale_jpg = gen / f".0.jpg.{dead.pid}.abcdefgh.part"
    stale_jpg.write_bytes(b"\0")
    live = gen / f".1.jpg.{os.getpid()}.abcdefgh.part"  # a live writer's: left alone
    live.write_bytes(b"\0")
    run_script("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={gen}")
    assert not stale_jpg.exists() and live.exists(), "the next write into the folder removed the dead process's file"
    assert sorted(p.name for p in gen.iterdir() if not p.name.startswith(".")) == ["0.jpg", "1.jpg", "2.jpg"]


# ---------------------------------------------------------------------------------------------------------
# 7. Accounting that cannot be inflated.


def test_idle_devices_are_not_chips(onnx_model, om_for_faults, tmp_path):
    vectors = make_vectors(tmp_path / "vectors", 5)
    devices = ",".join(map(str, range(16)))
    result = run(
        "run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"), "--device", devices
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "nan" not in result.stdout and "[INFO] card summary: 5 devices, 5 file(s)" in result.stdout
    log = tmp_path / "runner.log"
    log.write_text(result.stdout)
    assert json.loads(run_script("perf_calc.py", "--log", str(log), "--json").stdout)["logs"][0]["chips"] == 5
    driver = run(
        "run_msame.sh",
        "--model",
        str(om_for_faults),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "om_out"),
        "--device",
        devices,
        env=env_with(),
    )
    assert driver.returncode == 0, driver.stderr
    card_log = next((tmp_path / "om_out").glob(".*.log"))
    assert "card summary: 5 devices" in card_log.read_text()
    assert json.loads(run_script("perf_calc.py", "--log", str(card_log), "--json").stdout)["logs"][0]["chips"] == 5


def test_perf_calc_reads_only_regular_files(tmp_path):
    started = time.time()
    assert_clean_error(run("perf_calc.py", "--log", "/dev/urandom"), "/dev/urandom", "not a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_clean_error(run("perf_calc.py", "--log", str(fifo)), fifo, "not a regular file")
    huge = tmp_path / "huge.log"
    with open(huge, "wb") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: no disk used
    assert_clean_error(run("perf_calc.py", "--log", str(huge)), huge, "more than a tool's log can be", "67,108,864 at most")
    assert time.time() - started < 30, "nothing read forever"


# ---------------------------------------------------------------------------------------------------------
# 8. Modes decided by what a path is; arguments checked before any work.


def test_folder_whose_name_holds_bin_is_a_folder(onnx_model, testdata, tmp_path):
    _, vectors = testdata
    folder = tmp_path / "a.binaries" / "vectors"
    shutil.copytree(vectors, folder)
    result = run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(folder), "--output", str(tmp_path / "out"))
    assert "3 input file(s)" in result.stdout
    (run_dir,) = runs_in(tmp_path / "out")
    assert sorted(p.name for p in run_dir.iterdir()) == ["0_output_0.bin", "1_output_0.bin", "2_output_0.bin"]
    clash = make_vectors(tmp_path / "clash", 1)
    shutil.copy(clash / "0.bin", clash / "0.dat")
    assert_clean_error(
        run("run_msame.sh", "--model", str(onnx_model), "--input", str(clash), "--output", str(tmp_path / "o2")),
        clash / "0.dat",
        "same output name",
    )
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--seed", "-1", "expected an integer >= 0, got -1"),
        ("--outfmt", "PDF", "expected TXT or BIN (any case), got 'PDF'"),
        ("--iters", "ten", "expected a positive integer, got 'ten'"),
        ("--batch_size", "17465", "a grid of more than 17464 images is taller than JPEG allows, got 17465"),
        ("--batch_size", "18446744073709551617", "a grid of more than 17464 images is taller than JPEG allows, got 18446744073709551617"),
        ("--iters", "0x10", "expected a positive integer, got '0x10'"),
    ],
)
def test_run_pipeline_checks_arguments_before_any_step(tmp_path, flag, value, message):
    from gan.files import JPEG_MAX_SIDE, grid_height

    assert grid_height(17464) <= JPEG_MAX_SIDE < grid_height(17465), "run_pipeline.sh's bound is GAN_testdata.py's"
    workdir = tmp_path / "work"
    result = run("run_pipeline.sh", "--workdir", str(workdir), flag, value)
    assert result.returncode == 2 and result.stderr.strip() == f"run_pipeline.sh: error: argument {flag}: {message} (see --help)"
    assert "==" not in result.stdout and not workdir.exists(), "nothing ran, nothing was created"


def test_txt2jpg_refuses_grids_of_an_earlier_run(onnx_model, testdata, tmp_path):
    _, vectors = testdata
    out = tmp_path / "out"
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(out))
    gen = tmp_path / "gen"
    gen.mkdir()
    (gen / "7.jpg").write_bytes(b"an earlier run's grid")
    assert_clean_error(run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={gen}"), gen, "holds grids 7")
    assert sorted(p.name for p in gen.iterdir()) == ["7.jpg"]
    images, _ = testdata
    jpgs = {p.name: p.read_bytes() for p in images.glob("*.jpg")}
    result = run("GAN_txt2jpg.py", f"--txt_path={out}", f"--infer_results_path={images}")
    assert_clean_error(result, images, "online folder", "would replace its <i>.jpg")
    assert {p.name: p.read_bytes() for p in images.glob("*.jpg")} == jpgs
