"""GAN_train.py for a few steps on a tiny MNIST-format dataset that the test writes itself (no ../shared)."""

import numpy as np
import pytest
import torch
from test_models import OFFICIAL_KEYS

from conftest import assert_clean_error, run_script
from models import load_generator


def write_idx(root, count=96):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = (rng.random((count, 28, 28)) > 0.8).astype(np.uint8) * 255
    labels = rng.integers(0, 10, count).astype(np.uint8)
    for prefix, n in (("train", count), ("t10k", 16)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(np.array([2051, n, 28, 28], ">i4").tobytes() + images[:n].tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, n], ">i4").tobytes() + labels[:n].tobytes())
    return root


def test_train_saves_loadable_weights_samples_and_resumes(tmp_path):
    data = write_idx(tmp_path / "data")
    output = tmp_path / "weights" / "g.pth"
    first = run_script("tools/GAN_train.py", "--data_root", str(data), "--epochs", "1", "--batch_size", "32", "--output", str(output))
    assert "epoch=1 " in first.stdout
    state = torch.load(output, weights_only=True)
    assert set(state) == OFFICIAL_KEYS, "a plain state_dict with the official file's keys"
    generator = load_generator(output)
    assert generator(torch.zeros(2, 100)).shape == (2, 1, 28, 28)
    train_dir = tmp_path / "weights" / "g_train"
    assert (train_dir / "epoch_001.png").is_file() and (train_dir / "checkpoint.pt").is_file()
    checkpoint = torch.load(train_dir / "checkpoint.pt", weights_only=True)  # tensors and plain values: resumable safely
    assert {"generator", "discriminator", "opt_g", "opt_d", "ema", "epoch"} <= set(checkpoint) and checkpoint["epoch"] == 0
    second = run_script(
        "tools/GAN_train.py",
        "--data_root",
        str(data),
        "--epochs",
        "2",
        "--batch_size",
        "32",
        "--output",
        str(output),
        "--resume",
        str(train_dir / "checkpoint.pt"),
    )
    assert "resumed from" in second.stdout and "epoch=2 " in second.stdout and "epoch=1 " not in second.stdout
    assert (train_dir / "epoch_002.png").is_file()
    assert torch.load(train_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    after = torch.load(output, weights_only=True)
    assert not torch.equal(after["model.0.weight"], state["model.0.weight"]), "training went on"


def test_missing_dataset_says_how_to_get_it(tmp_path):
    result = run_script("tools/GAN_train.py", "--data_root", str(tmp_path / "nowhere"), "--output", str(tmp_path / "g.pth"), check=False)
    assert_clean_error(result, "MNIST not found", "train-images-idx3-ubyte", "--download")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refusal makes no training folder (g_train/)"


@pytest.mark.parametrize(("flag", "value"), [("--threads", "-3"), ("--seed", "-3"), ("--seed", str(2**32))])
def test_numbers_are_checked_where_they_are_parsed(tmp_path, flag, value):
    """Found by the command-line fuzzer: torch's and numpy's own tracebacks for a negative thread count or seed."""
    result = run_script("tools/GAN_train.py", "--data_root", str(tmp_path), "--output", str(tmp_path / "g.pth"), flag, value, check=False)
    assert result.returncode == 2
    assert_clean_error(result, f"GAN_train.py: error: argument {flag}", value)
