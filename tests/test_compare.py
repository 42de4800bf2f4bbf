import re

import numpy as np
from PIL import Image

from conftest import assert_clean_error, no_torch_env, run_script


def make_run(tmp_path, testdata, transform=lambda i, x: x, skip=()):
    """An offline run folder built from the online outputs, optionally perturbed or missing batches."""
    images, _ = testdata
    run = tmp_path / "out" / "20260101_000000_000000"
    run.mkdir(parents=True)
    for i in range(3):
        if i not in skip:
            transform(i, np.fromfile(images / f"{i}.bin", np.float32)).astype(np.float32).tofile(run / f"{i}_output_0.bin")
    return run


def compare(tmp_path, testdata, *extra):
    images, _ = testdata
    return run_script(
        "GAN_compare.py",
        f"--online_path={images}",
        f"--offline_path={tmp_path / 'out'}",
        "--diff_image",
        str(tmp_path / "diff.png"),
        *extra,
        check=False,
        env=no_torch_env(tmp_path),
    )


def test_real_offline_run_passes_fp32(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"), "--outfmt", "TXT")
    result = compare(tmp_path, testdata)
    assert result.returncode == 0, result.stdout + result.stderr
    overall = next(line for line in result.stdout.splitlines() if line.startswith("overall:"))
    max_abs = float(overall.split("max_abs ")[1].split(",")[0])
    assert max_abs <= 2e-6 and "3 batches, 12 images" in overall
    assert result.stdout.splitlines()[-1].startswith("PASS: fp32")
    picture = Image.open(tmp_path / "diff.png")
    assert picture.size == (3 * 122 + 2 * 8, 32), "online | offline | difference"


def test_metrics_are_right(testdata, tmp_path):
    # batch 1 offset by exactly 0.01: max abs 0.01, mean abs 0.01 on that batch
    make_run(tmp_path, testdata, lambda i, x: x + np.float32(0.01) * (i == 1))
    result = compare(tmp_path, testdata, "--tolerance", "fp16")
    rows = {int(line.split()[0]): line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()}
    assert float(rows[0][2]) == 0 and float(rows[2][2]) == 0
    assert abs(float(rows[1][2]) - 0.01) < 1e-6 and abs(float(rows[1][3]) - 0.01) < 1e-6
    assert result.returncode == 1 and "FAIL: fp16" in result.stdout, "a batch shifted as a whole is not fp16 rounding (mean abs)"
    fp32 = compare(tmp_path, testdata)
    assert fp32.returncode == 1 and fp32.stdout.splitlines()[-1].startswith("FAIL: fp32")


def test_fp16_preset_takes_rare_pixels_moved_as_fp16_moves_them(testdata, tmp_path):
    def moved(i, x):  # one pixel per image off by 0.03, as on Tanh's steep part in fp16
        x = x.copy()
        x[::784] += np.float32(0.03)
        return x

    make_run(tmp_path, testdata, moved)
    result = compare(tmp_path, testdata, "--tolerance", "fp16")
    assert result.returncode == 0 and "PASS: fp16" in result.stdout
    assert "FAIL: fp32" in compare(tmp_path, testdata).stdout


def test_cosine_catches_a_wrong_image(testdata, tmp_path):
    make_run(tmp_path, testdata, lambda i, x: -x if i == 2 else x)
    result = compare(tmp_path, testdata, "--tolerance", "fp16")
    assert result.returncode == 1 and "FAIL" in result.stdout
    assert float(next(line for line in result.stdout.splitlines() if line.split()[:1] == ["2"]).split()[4]) < -0.99


def test_missing_batch_on_either_side(testdata, tmp_path):
    make_run(tmp_path, testdata, skip=(1,))
    result = compare(tmp_path, testdata)
    assert_clean_error(result, "batches 1 are in", "missing from")
    assert result.returncode == 1
    run = tmp_path / "out" / "20260101_000000_000000"
    np.zeros(4 * 784, np.float32).tofile(run / "1_output_0.bin")
    np.zeros(4 * 784, np.float32).tofile(run / "7_output_0.bin")
    result = compare(tmp_path, testdata)
    assert_clean_error(result, "batches 7 are in", "missing from")


def test_wrong_image_count(testdata, tmp_path):
    make_run(tmp_path, testdata, lambda i, x: x[: 784 * 2] if i == 0 else x)
    assert_clean_error(compare(tmp_path, testdata), "0_output_0.bin", "2 images", "has 4")


def test_run_against_run(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    for name in ("a", "b"):
        run_script(
            "run_msame.sh",
            "--model",
            str(onnx_model),
            "--input",
            str(vectors),
            "--output",
            str(tmp_path / name),
            "--outfmt",
            "TXT" if name == "a" else "BIN",
            "--threads",
            "1" if name == "a" else "2",
        )
    result = run_script(
        "GAN_compare.py",
        f"--online_path={tmp_path / 'a'}",
        f"--offline_path={tmp_path / 'b'}",
        "--diff_image",
        "",
        env=no_torch_env(tmp_path),
    )
    assert result.stdout.splitlines()[-1].startswith("PASS: fp32"), "two runs of the same model agree at fp32"
    assert "reference: " in result.stdout and "complete run of onnxruntime" in result.stdout.splitlines()[0]
    (run_a,) = [p for p in (tmp_path / "a").iterdir() if p.is_dir()]
    assert_clean_error(
        run_script("GAN_compare.py", f"--online_path={run_a}", f"--offline_path={tmp_path / 'a'}", "--diff_image", "", check=False),
        run_a,
        "same run",
    )
    shifted = tmp_path / "shifted" / "20260101_000000_000000"
    shifted.mkdir(parents=True)
    for i in range(3):
        (np.fromfile(images / f"{i}.bin", np.float32) + np.float32(0.0005)).tofile(shifted / f"{i}_output_0.bin")
    fp16 = run_script(
        "GAN_compare.py", f"--online_path={run_a}", f"--offline_path={tmp_path / 'shifted'}", "--tolerance", "fp16", "--diff_image", ""
    )
    max_abs = float(re.search(r"max_abs ([0-9.e+-]+),", fp16.stdout).group(1))
    assert "PASS: fp16" in fp16.stdout and abs(max_abs - 5e-4) < 1e-5, "the TXT reference holds 6 significant digits"


def test_reference_that_is_neither_online_nor_a_run(testdata, tmp_path):
    make_run(tmp_path, testdata)
    (tmp_path / "empty").mkdir()
    assert_clean_error(compare_with(tmp_path, tmp_path / "empty"), tmp_path / "empty", "neither online outputs")


def compare_with(tmp_path, reference):
    return run_script("GAN_compare.py", f"--online_path={reference}", f"--offline_path={tmp_path / 'out'}", "--diff_image", "", check=False)
