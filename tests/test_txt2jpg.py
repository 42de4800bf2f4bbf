import os
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from conftest import assert_clean_error, no_torch_env, partial_files, run_script
from gan.cli import InputError
from gan.files import format_msame_txt, grid_array, save_grid
from gan.runs import list_output_files, open_run


@pytest.mark.parametrize("count", [1, 4, 10, 64])
def test_grid_matches_torchvision_pixel_for_pixel(count, tmp_path):
    rng = np.random.default_rng(count)
    for _ in range(5):
        images = np.tanh(rng.normal(0, 1.5, (count, 1, 28, 28))).astype(np.float32)
        save_image(torch.from_numpy(images), tmp_path / "tv.png", normalize=True)
        expected = np.asarray(Image.open(tmp_path / "tv.png"))
        np.testing.assert_array_equal(grid_array(images), expected)
        # and the JPEG bytes, since both hand the same pixels to Pillow
        save_image(torch.from_numpy(images), tmp_path / "tv.jpg", normalize=True)
        save_grid(images, tmp_path / "ours.jpg")
        assert (tmp_path / "ours.jpg").read_bytes() == (tmp_path / "tv.jpg").read_bytes()
    assert grid_array(images).shape[:2] == tuple(make_grid(torch.from_numpy(images)).shape[1:])


def write_outputs(folder, names, images):
    folder.mkdir(parents=True)
    for name in names:
        path = folder / name
        if name.endswith(".txt"):
            path.write_text(format_msame_txt(images))
        elif name.endswith(".npy"):
            np.save(path, images)
        else:
            images.tofile(path)


def test_newest_run_folder_by_time_not_by_name(tmp_path):
    images = np.zeros((2, 1, 28, 28), np.float32)
    # msame's unpadded names: 2021-10-1 (2021101) sorts before 2021-9-30 (2021930) as text, although it is newer
    old, new = tmp_path / "out" / "2021930_8_7_6_12345", tmp_path / "out" / "2021101_8_7_6_1"
    write_outputs(old, ["0_output_0.txt"], images)
    write_outputs(new, ["0_output_0.txt"], images)
    os.utime(new, (time.time() - 100, time.time() - 100))  # older by its modification time: not what decides
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[-1] == old.name
    assert open_run(tmp_path / "out").path == new
    assert open_run(new).path == new, "a folder holding outputs is used as it is"
    ambiguous = tmp_path / "out" / "2021111_9_0_0_0"  # 2021-1-11 or 2021-11-1: newer than both, or not
    write_outputs(ambiguous, ["0_output_0.txt"], images)
    with pytest.raises(InputError, match="cannot tell which run is newest: 2021101_8_7_6_1 and 2021111_9_0_0_0 may have started"):
        open_run(tmp_path / "out")
    ambiguous.rename(tmp_path / "out" / "2022111_9_0_0_0")  # 2022-1-11 or 2022-11-1: either way newer than 2021-10-1
    assert open_run(tmp_path / "out").path.name == "2022111_9_0_0_0"


def test_batch_index_is_the_whole_stem_and_every_naming_is_read(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    msame = tmp_path / "msame"
    write_outputs(msame, ["1_output_0.txt", "12_output_0.txt", "123_output_0.bin"], images)
    assert {i: p.name for i, p in list_output_files(msame).items()} == {1: "1_output_0.txt", 12: "12_output_0.txt", 123: "123_output_0.bin"}
    ais = tmp_path / "ais"
    write_outputs(ais, ["7_0.bin", "100_0.npy", "5_0.txt", "summary.json"], images)
    run_script("GAN_txt2jpg.py", f"--txt_path={ais}", f"--infer_results_path={tmp_path / 'gen'}", env=no_torch_env(tmp_path))
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["100.jpg", "5.jpg", "7.jpg"]
    save_grid(images, tmp_path / "expected.jpg")
    for name in ("100.jpg", "7.jpg"):  # NPY and BIN hold the exact values
        assert (tmp_path / "gen" / name).read_bytes() == (tmp_path / "expected.jpg").read_bytes()
    expected = np.asarray(Image.open(tmp_path / "expected.jpg"), dtype=np.int16)
    from_txt = np.asarray(Image.open(tmp_path / "gen" / "5.jpg"), dtype=np.int16)  # 6 significant digits
    assert from_txt.shape == expected.shape and np.abs(from_txt - expected).mean() < 0.5


def test_offline_grid_equals_online_grid(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"), "--outfmt", "BIN")
    run_script("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'out'}", f"--infer_results_path={tmp_path / 'genimg'}")
    for i in range(3):
        online = np.asarray(Image.open(images / f"{i}.jpg"), dtype=np.int16)
        offline = np.asarray(Image.open(tmp_path / "genimg" / f"{i}.jpg"), dtype=np.int16)
        assert online.shape == offline.shape == (32, 122, 3)
        assert np.abs(online - offline).max() <= 2


def test_bad_txt_outputs(tmp_path):
    run = tmp_path / "out" / "run"
    write_outputs(run, ["0_output_0.txt"], np.zeros((1, 1, 28, 28), np.float32))
    (run / "1_output_0.txt").write_text("0.1 0.2 abc \n")
    result = run_script("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'out'}", f"--infer_results_path={tmp_path / 'gen'}", check=False)
    assert_clean_error(result, run / "1_output_0.txt", "expected numbers", "abc")
    (run / "1_output_0.txt").write_text("0.5 " * 700 + "\n")
    result = run_script("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'out'}", f"--infer_results_path={tmp_path / 'gen'}", check=False)
    assert_clean_error(result, run / "1_output_0.txt", "700 values", "784")
    assert not (tmp_path / "gen" / "1.jpg").exists() and not partial_files(tmp_path)


def test_no_outputs_is_a_clear_error(tmp_path):
    (tmp_path / "out").mkdir()
    result = run_script("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'out'}", f"--infer_results_path={tmp_path / 'gen'}", check=False)
    assert_clean_error(result, tmp_path / "out", "no output files")
