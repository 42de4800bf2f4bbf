"""Shared fixtures: a seeded random generator checkpoint, its ONNX export and a tiny test-data set.

Nothing here needs ../shared or a network: every input is built by the tests themselves.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tools"))  # the tools, importable by their tests as the steps are

from models import Generator


def random_generator(seed=0):
    """A Generator with seeded random weights and non-trivial BatchNorm statistics (so folding is exercised)."""
    torch.manual_seed(seed)
    generator = Generator()
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0, 0.2)
    return generator.eval()


def run_script(*args, cwd=None, env=None, check=True):
    """Run a project script (or bash script) as a user would; returns the CompletedProcess."""
    script = str(ROOT / args[0])
    command = ["bash", script, *args[1:]] if args[0].endswith(".sh") else [sys.executable, script, *args[1:]]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def assert_clean_error(result, *must_name):
    """The bad-input contract: non-zero exit, exactly one line on stderr naming the culprit, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in must_name:
        assert str(text) in lines[0], lines[0]
    return lines[0]


def no_torch_env(tmp_path):
    """An environment in which `import torch` fails: the offline steps must not need it."""
    blocker = tmp_path / "no_torch"
    (blocker / "torch").mkdir(parents=True, exist_ok=True)
    (blocker / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked: the offline half must not import it')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(blocker)
    return env


def partial_files(folder):
    return [p for p in Path(folder).rglob("*.part")]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A DistributedDataParallel-style checkpoint (`module.` prefixes), like the official weights file."""
    path = tmp_path_factory.mktemp("weights") / "generator_ddp.pth"
    torch.save({f"module.{k}": v for k, v in random_generator().state_dict().items()}, path)
    return path


@pytest.fixture(scope="session")
def onnx_model(checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "GAN.onnx"
    run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={path}")
    return path


@pytest.fixture(scope="session")
def testdata(checkpoint, tmp_path_factory):
    """3 batches of 4: (online folder, offline folder)."""
    root = tmp_path_factory.mktemp("testdata")
    run_script(
        "GAN_testdata.py",
        f"--online_path={root / 'images'}",
        f"--offline_path={root / 'vectors'}",
        f"--pth_path={checkpoint}",
        "--iters",
        "3",
        "--batch_size",
        "4",
        "--seed",
        "0",
    )
    return root / "images", root / "vectors"


def latent(rows, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 100), dtype=np.float32)


@pytest.fixture(scope="session")
def pipeline_workdir(checkpoint, tmp_path_factory):
    """run_pipeline.sh on 3 batches of 4 with the test checkpoint: (workdir, its stdout)."""
    workdir = tmp_path_factory.mktemp("pipeline") / "work"
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(checkpoint), "--workdir", str(workdir), "--iters", "3", "--batch_size", "4"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, result.stdout
