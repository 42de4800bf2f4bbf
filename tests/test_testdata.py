import numpy as np
import torch
from PIL import Image

from conftest import assert_clean_error, run_script
from models import load_generator


def test_files_sizes_and_online_outputs(testdata, checkpoint):
    images, vectors = testdata
    assert sorted(p.name for p in vectors.iterdir()) == ["0.bin", "1.bin", "2.bin"]
    assert sorted(p.name for p in images.iterdir()) == ["0.bin", "0.jpg", "1.bin", "1.jpg", "2.bin", "2.jpg"]
    z = np.fromfile(vectors / "1.bin", dtype=np.float32).reshape(4, 100)
    assert abs(z.mean()) < 0.5 and 0.7 < z.std() < 1.3, "N(0, 1) latents"
    online = np.fromfile(images / "1.bin", dtype=np.float32).reshape(4, 1, 28, 28)
    with torch.inference_mode():
        expected = load_generator(checkpoint)(torch.from_numpy(z)).numpy()
    np.testing.assert_array_equal(online, expected)
    assert Image.open(images / "1.jpg").size == (2 + 4 * 30, 32), "4 images in one row, 2 px padding"


def test_same_seed_same_bytes_other_seed_other_bytes(checkpoint, tmp_path, testdata):
    images, vectors = testdata
    args = [f"--pth_path={checkpoint}", "--iters", "3", "--batch_size", "4"]
    run_script("GAN_testdata.py", *args, f"--online_path={tmp_path / 'a_img'}", f"--offline_path={tmp_path / 'a_vec'}", "--seed", "0")
    run_script("GAN_testdata.py", *args, f"--online_path={tmp_path / 'b_img'}", f"--offline_path={tmp_path / 'b_vec'}", "--seed", "1")
    for i in range(3):
        assert (tmp_path / "a_vec" / f"{i}.bin").read_bytes() == (vectors / f"{i}.bin").read_bytes()
        assert (tmp_path / "a_img" / f"{i}.bin").read_bytes() == (images / f"{i}.bin").read_bytes()
        assert (tmp_path / "b_vec" / f"{i}.bin").read_bytes() != (vectors / f"{i}.bin").read_bytes()


def test_batch_one_gets_an_online_image(checkpoint, tmp_path):
    run_script("GAN_testdata.py", f"--pth_path={checkpoint}", f"--online_path={tmp_path / 'i'}", f"--offline_path={tmp_path / 'v'}")
    assert Image.open(tmp_path / "i" / "0.jpg").size == (28, 28), "upstream wrote no image for batch 1"


def test_bad_counts_and_stale_batches(checkpoint, tmp_path, testdata):
    common = [f"--pth_path={checkpoint}", f"--online_path={tmp_path / 'i'}", f"--offline_path={tmp_path / 'v'}"]
    assert_clean_error(run_script("GAN_testdata.py", *common, "--iters", "0", check=False), "--iters", "positive integer")
    assert_clean_error(run_script("GAN_testdata.py", *common, "--batch_size", "-4", check=False), "--batch_size", "positive integer")
    assert not (tmp_path / "i").exists()
    images, vectors = testdata  # 3 batches there; asking for 2 would leave batch 2 to be mistaken for this run's
    assert_clean_error(
        run_script(
            "GAN_testdata.py",
            f"--pth_path={checkpoint}",
            f"--online_path={images}",
            f"--offline_path={vectors}",
            "--iters",
            "2",
            "--batch_size",
            "4",
            check=False,
        ),
        "holds batches 2 of an earlier run",
    )


def test_unwritable_output_folder(checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_clean_error(
        run_script(
            "GAN_testdata.py",
            f"--pth_path={checkpoint}",
            f"--online_path={blocker / 'images'}",
            f"--offline_path={tmp_path / 'v'}",
            check=False,
        ),
        blocker / "images",
        "cannot create",
    )
