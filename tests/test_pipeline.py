"""run_pipeline.sh (run_pipeline.py) keeps its promises under any kill (issue 20): no step outlives it, a step ended by
a signal is named in one line, arguments are checked where they are parsed, nothing is left outside the workdir.

Each test asserts the exit code, the one stderr line, and what is (and is not) left on disk or running.
"""

import os
import signal
import subprocess
import time

import pytest
from test_walkarounds import loading_torch, pipeline, processes_with

from conftest import ROOT, assert_clean_error


def wait_until(condition, seconds=60):
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.02)
    assert condition(), "timed out"


def steps_of(workdir):
    return [line.split("\t") for line in (workdir / "steps.tsv").read_text().splitlines()[1:]]


def test_a_step_killed_with_sigkill_is_named_in_one_line(checkpoint, tmp_path):
    """What the kernel's OOM killer does to a step: one line naming the step and the signal, exit 137, steps.tsv says so."""
    workdir = tmp_path / "work"
    process = pipeline(checkpoint, workdir)
    wait_until(lambda: loading_torch(processes_with(f"GAN_pth2onnx.py.*{workdir}")))
    for pid in processes_with(f"GAN_pth2onnx.py.*{workdir}"):
        os.kill(int(pid), signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 137, stdout + stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("run_pipeline.sh: error: step export was killed by SIGKILL") and str(workdir) in line
    assert [row[:2] for row in steps_of(workdir)] == [["export", "killed (SIGKILL)"]]
    assert not (workdir / "GAN.onnx").exists() and not (workdir / "vectors").exists(), "no later step ran"


def test_sigkill_of_the_pipeline_leaves_no_step_running(checkpoint, tmp_path):
    """A CI timeout or a cancelled job: the step dies with the pipeline and writes nothing after."""
    workdir = tmp_path / "work"
    process = pipeline(checkpoint, workdir, "--iters", "400", "--batch_size", "64")
    wait_until(lambda: (workdir / "vectors").is_dir() and len(os.listdir(workdir / "vectors")) >= 2)  # testdata is writing
    process.kill()
    process.communicate(timeout=30)
    wait_until(lambda: not processes_with(str(workdir)), seconds=10)
    written = len(os.listdir(workdir / "vectors"))
    time.sleep(1.5)
    assert len(os.listdir(workdir / "vectors")) == written, "nothing is written once the pipeline is gone"


@pytest.mark.parametrize("workdir_flag", ["--workdir=-wd", "--workdir=--looks-like-a-flag"])
def test_a_workdir_named_like_a_flag_is_checked_like_any_other(checkpoint, tmp_path, workdir_flag):
    name = workdir_flag.split("=", 1)[1]
    (tmp_path / name).mkdir()
    (tmp_path / name / "earlier.txt").write_text("an earlier run's file")
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(checkpoint), workdir_flag], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1 and assert_clean_error(result, name, "is not an empty folder")
    assert sorted(os.listdir(tmp_path / name)) == [".pipeline.lock", "earlier.txt"]
    assert "==" not in result.stdout


def test_a_missing_checkpoint_is_exit_1_before_anything(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", "missing.pth", "--workdir", "w"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1 and assert_clean_error(result, "missing.pth", "no such checkpoint")
    assert os.listdir(tmp_path) == []


def test_tmpdir_pointing_nowhere_changes_nothing(checkpoint, tmp_path):
    """Temporary files live in the workdir (or nowhere): TMPDIR is not needed."""
    workdir = tmp_path / "work"
    env = dict(os.environ, TMPDIR=str(tmp_path / "no_such_folder"))
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(checkpoint), "--workdir", str(workdir), "--iters", "1", "--batch_size", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert [row[1] for row in steps_of(workdir)] == ["ok"] * 8


def test_two_pipelines_started_together_get_their_own_default_workdirs(checkpoint, tmp_path):
    command = ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(checkpoint), "--iters", "1", "--batch_size", "2"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0], results
    workdirs = sorted((tmp_path / "runs").iterdir())
    assert len(workdirs) == 2 and all([row[1] for row in steps_of(w)] == ["ok"] * 8 for w in workdirs)
