"""The offline half on an inference host: a virtual environment made from requirements-offline.txt alone (no torch,
no onnx), running every offline step for real on what the full install exported.

.ci/run makes that environment and points GAN_OFFLINE_PYTHON at its interpreter; elsewhere this test is skipped,
with the way to run it:
    python3 -m venv .venv-offline && .venv-offline/bin/pip install -r requirements-offline.txt
    GAN_OFFLINE_PYTHON=.venv-offline/bin/python python -m pytest -q tests/test_offline_host.py
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_ascend_tools import env_with

from conftest import ROOT

OFFLINE_PYTHON = os.environ.get("GAN_OFFLINE_PYTHON")


@pytest.fixture(scope="module")
def offline_python():
    if not OFFLINE_PYTHON:
        pytest.skip("GAN_OFFLINE_PYTHON is not set: no environment made from requirements-offline.txt to run in (.ci/run makes one)")
    python = os.path.abspath(OFFLINE_PYTHON)
    for module in ("torch", "onnx"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is importable in the offline environment: it would prove nothing"
    return python


def offline(python, *args, env=None):
    script = str(ROOT / args[0])
    command = ["bash", script, *args[1:]] if args[0].endswith(".sh") else [python, script, *args[1:]]
    result = subprocess.run(command, capture_output=True, text=True, env={**(env or os.environ), "PYTHON": python})
    assert result.returncode == 0, f"{args[0]} failed in the offline environment:\n{result.stdout}\n{result.stderr}"
    return result


def test_every_offline_step_runs_without_torch(offline_python, onnx_model, testdata, tmp_path):
    images, vectors = testdata
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(onnx_model, work / "GAN.onnx")
    shutil.copytree(images, work / "images")
    shutil.copytree(vectors, work / "vectors")
    log = offline(
        offline_python,
        "run_msame.sh",
        "--model",
        str(work / "GAN.onnx"),
        "--input",
        str(work / "vectors"),
        "--output",
        str(work / "out"),
        "--outfmt",
        "txt",
    ).stdout
    assert "Execute sample success" in log
    (work / "GAN_bs4.log").write_text(log)
    offline(offline_python, "GAN_txt2jpg.py", f"--txt_path={work / 'out'}", f"--infer_results_path={work / 'genimg'}")
    assert sorted(p.name for p in (work / "genimg").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    compare = offline(
        offline_python,
        "GAN_compare.py",
        f"--online_path={work / 'images'}",
        f"--offline_path={work / 'out'}",
        "--diff_image",
        str(work / "compare_first_batch.png"),
        "--error_plot",
        str(work / "compare_errors.png"),
        "--save_json",
        str(work / "compare.json"),
    )
    assert "PASS: fp32" in compare.stdout
    offline(
        offline_python,
        "GAN_eval.py",
        "--images_path",
        str(work / "images"),
        "--images_path",
        str(work / "out"),
        "--save_json",
        str(work / "eval.json"),
    )
    perf = json.loads(offline(offline_python, "perf_calc.py", "--log", str(work / "GAN_bs4.log"), "--json").stdout)["logs"][0]
    assert (perf["tool"], perf["batch_size"], perf["chips"]) == ("onnxruntime", 4, 1)
    offline(offline_python, "perf_calc.py", "--log", str(work / "GAN_bs4.log"), "--save_json", str(work / "perf.json"))
    offline(
        offline_python,
        "perf_sweep.py",
        "--model",
        str(work / "GAN.onnx"),
        "--batch_sizes",
        "1,4",
        "--images",
        "32",
        "--output",
        str(work / "sweep"),
        "--quiet",
    )
    assert (work / "sweep" / "sweep.png").is_file()
    report = offline(offline_python, "GAN_report.py", "--workdir", str(work))
    assert "wrote" in report.stdout and "invalid" not in report.stdout
    assert "onnxruntime" in (work / "report.md").read_text()
    judged = offline(offline_python, "GAN_regression.py", "--baseline", str(work), "--candidate", str(work), "--resamples", "20")
    assert "verdict: nothing worse" in judged.stdout


def test_the_driver_of_the_ascend_tools_runs_without_torch(offline_python, onnx_model, testdata, tmp_path):
    """The .om path (msame_driver.py) against the test doubles, the driver itself in the offline environment."""
    _, vectors = testdata
    env = env_with()
    offline(
        offline_python,
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--output_prefix",
        str(tmp_path / "GAN_bs"),
        "--batch_sizes",
        "4",
        env=env,
    )
    result = offline(
        offline_python,
        "run_msame.sh",
        "--model",
        str(tmp_path / "GAN_bs4.om"),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        env=env,
    )
    assert "[INFO] 3 outputs for 3 inputs" in result.stdout and "chips per card: 4 (x4" in result.stdout


TORCH_STEPS = {
    "GAN_pth2onnx.py": ["--input_file=weights/generator_mnist.pth"],
    "GAN_testdata.py": ["--pth_path=weights/generator_mnist.pth"],
    "GAN_layer_compare.py": ["--pth", "weights/generator_mnist.pth", "--onnx", "x.onnx", "--input", "vectors/0.bin"],
    "tools/GAN_benchmark.py": ["--pth", "weights/generator_mnist.pth"],
    "tools/GAN_int8_schemes.py": ["--pth", "weights/generator_mnist.pth"],
    "tools/GAN_train.py": ["--data_root", "data", "--output", "g.pth"],
    "GAN_eval.py": ["--train_classifier", "--data_root", "data"],
}


@pytest.mark.parametrize("script", sorted(TORCH_STEPS))
def test_a_step_that_needs_torch_says_so_in_one_line(offline_python, tmp_path, script):
    """--help works without torch; a bad flag is still exit 2; a run is one line naming requirements.txt, exit 1."""
    command = [offline_python, str(ROOT / script)]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0 and "usage:" in shown.stdout and shown.stderr == "", shown.stderr
    bad = subprocess.run([*command, "--no_such_flag"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
    ran = subprocess.run([*command, *TORCH_STEPS[script]], capture_output=True, text=True, cwd=tmp_path)
    (line,) = ran.stderr.splitlines()
    assert ran.returncode == 1 and line.startswith(f"{Path(script).name}: error: this step needs torch") and "requirements.txt" in line
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_the_pipeline_says_which_step_needs_torch_before_it_starts(offline_python, tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--workdir", "w"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": offline_python},
    )
    (line,) = result.stderr.splitlines()
    assert result.returncode == 1 and line.startswith("run_pipeline.sh: error: the export and testdata steps need torch and onnx")
    assert "requirements.txt" in line and os.listdir(tmp_path) == [], "nothing started, no workdir made"
