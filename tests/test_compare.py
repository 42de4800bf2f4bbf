import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
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
        "--error_plot",
        str(tmp_path / "errors.png"),
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
    assert picture.size == (3 * 122 + 2 * 8, 32 + 16), "online | offline | difference, labelled above"


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
        "--error_plot",
        "",
        env=no_torch_env(tmp_path),
    )
    assert result.stdout.splitlines()[-1].startswith("PASS: fp32"), "two runs of the same model agree at fp32"
    assert "reference: " in result.stdout and "complete run of onnxruntime" in result.stdout.splitlines()[0]
    (run_a,) = [p for p in (tmp_path / "a").iterdir() if p.is_dir()]
    assert_clean_error(
        run_script(
            "GAN_compare.py",
            f"--online_path={run_a}",
            f"--offline_path={tmp_path / 'a'}",
            "--diff_image",
            "",
            "--error_plot",
            "",
            check=False,
        ),
        run_a,
        "same run",
    )
    shifted = tmp_path / "shifted" / "20260101_000000_000000"
    shifted.mkdir(parents=True)
    for i in range(3):
        (np.fromfile(images / f"{i}.bin", np.float32) + np.float32(0.0005)).tofile(shifted / f"{i}_output_0.bin")
    fp16 = run_script(
        "GAN_compare.py",
        f"--online_path={run_a}",
        f"--offline_path={tmp_path / 'shifted'}",
        "--tolerance",
        "fp16",
        "--diff_image",
        "",
        "--error_plot",
        "",
    )
    max_abs = float(re.search(r"max_abs ([0-9.e+-]+),", fp16.stdout).group(1))
    assert "PASS: fp16" in fp16.stdout and abs(max_abs - 5e-4) < 1e-5, "the TXT reference holds 6 significant digits"


def test_reference_that_is_neither_online_nor_a_run(testdata, tmp_path):
    make_run(tmp_path, testdata)
    (tmp_path / "empty").mkdir()
    assert_clean_error(compare_with(tmp_path, tmp_path / "empty"), tmp_path / "empty", "neither online outputs")


def compare_with(tmp_path, reference):
    return run_script(
        "GAN_compare.py",
        f"--online_path={reference}",
        f"--offline_path={tmp_path / 'out'}",
        "--diff_image",
        "",
        "--error_plot",
        "",
        check=False,
    )


# ---------------------------------------------------------------------------------------------------------
# Element-wise, as Polygraphy reports: the OR rule, the statistics, the tolerances that would have passed.


def test_or_rule_and_needed_tolerances_on_known_arrays():
    from gan.precision import ErrorStatistics, errors_of, failing

    reference = np.array([1.0, 10.0, 0.1, 0.0, 2.0])
    values = np.array([1.05, 10.0, 0.13, 0.0, 2.0])  # errors: 0.05 (rel 0.05), 0, 0.03 (rel 0.3), 0, 0
    absolute, relative = errors_of(reference, values)
    assert np.allclose(absolute, [0.05, 0, 0.03, 0, 0]) and np.allclose(relative, [0.05, 0, 0.3, 0, 0])
    # fails only where abs > atol AND rel > rtol
    assert failing(absolute, relative, 0.04, 0.1).tolist() == [False, False, False, False, False]  # 0.05: rel 0.05 <= 0.1
    assert failing(absolute, relative, 0.04, 0.01).tolist() == [True, False, False, False, False]  # 0.03 <= atol
    assert failing(absolute, relative, 0.01, 0.01).tolist() == [True, False, True, False, False]
    statistics = ErrorStatistics(atol=0.01, rtol=0.01)
    statistics.add(reference[:3], values[:3])  # in two batches: the figures are of the whole
    statistics.add(reference[3:], values[3:])
    figures = statistics.summary()
    assert (figures["elements"], figures["failing"], figures["failing_share"]) == (5, 2, 0.4)
    assert abs(figures["needed_atol"] - 0.05) < 1e-12, "at rtol 0.01 both errors are beyond rtol: atol must reach the larger, 0.05"
    assert abs(figures["needed_rtol"] - 0.3) < 1e-12, "at atol 0.01 both are beyond atol: rtol must reach 0.3"
    assert abs(figures["abs"]["max"] - 0.05) < 1e-12 and abs(figures["abs"]["mean"] - 0.016) < 1e-12
    assert figures["abs"]["p50"] == 0 and abs(figures["rel"]["max"] - 0.3) < 1e-12
    assert (figures["nan"], figures["inf"], figures["quantiles_every"]) == (0, 0, 1)
    at_rtol = ErrorStatistics(atol=0.01, rtol=0.1)
    at_rtol.add(reference, values)
    assert abs(at_rtol.summary()["needed_atol"] - 0.03) < 1e-12 and at_rtol.summary()["failing"] == 1, (
        "only the 0.03 (rel 0.3) is beyond rtol 0.1"
    )
    zero = ErrorStatistics(atol=0.0, rtol=1e-5)
    zero.add(np.zeros(3), np.array([0.0, 1e-20, 0.0]))  # a zero reference counts as float64's epsilon
    assert zero.summary()["failing"] == 1 and zero.summary()["rel"]["max"] > 1e-5
    broken = ErrorStatistics()
    broken.add(np.ones(4), np.array([1.0, np.nan, np.inf, 1.0]))
    figures = broken.summary()
    assert (figures["nan"], figures["inf"], figures["failing"], figures["needed_atol"]) == (1, 1, 2, None)


@given(
    st.lists(st.tuples(st.floats(-4, 4), st.floats(-0.5, 0.5)), min_size=1, max_size=60),
    st.floats(0, 0.1),
    st.floats(0, 0.5),
)
@settings(max_examples=200, deadline=None)
def test_needed_tolerances_are_the_smallest_that_pass(pairs, atol, rtol):
    """Whatever the arrays: at atol = needed_atol (rtol kept) nothing fails, and any smaller atol fails something
    when needed_atol > 0; the same for rtol."""
    from gan.precision import ErrorStatistics, errors_of, failing

    reference = np.array([r for r, _ in pairs])
    values = reference + np.array([d for _, d in pairs])
    statistics = ErrorStatistics(atol, rtol)
    statistics.add(reference, values)
    figures = statistics.summary()
    absolute, relative = errors_of(reference, values)
    assert figures["failing"] == int(failing(absolute, relative, atol, rtol).sum())
    needed_atol, needed_rtol = figures["needed_atol"], figures["needed_rtol"]
    for needed, passes_with, smaller in (
        (needed_atol, lambda t: not failing(absolute, relative, t, rtol).any(), lambda t: failing(absolute, relative, t, rtol).any()),
        (needed_rtol, lambda t: not failing(absolute, relative, atol, t).any(), lambda t: failing(absolute, relative, atol, t).any()),
    ):
        if needed is None:  # infinite: a reference too small to divide by (or NaN); then something fails
            assert figures["failing"] > 0
            continue
        assert passes_with(needed)
        if needed > 0:
            assert smaller(np.nextafter(needed, 0))
    assert (figures["failing"] == 0) == (needed_atol is not None and needed_atol <= atol)
    assert (figures["failing"] == 0) == (needed_rtol is not None and needed_rtol <= rtol)


def test_elementwise_verdict_statistics_and_error_plot(testdata, tmp_path):
    from gan.records import read_step

    def moved(i, x):  # one pixel per image off by 0.02: abs 0.02 > atol 1e-3, rel > 1e-3 wherever |x| < 20
        x = x.reshape(-1, 784).copy()
        x[:, 300] += np.float32(0.02)
        return x

    make_run(tmp_path, testdata, moved)
    printed = compare(tmp_path, testdata, "--tolerance", "int8")  # no --atol/--rtol: figures printed, not judged
    assert printed.returncode == 0 and "element-wise (fails where abs > atol and rel > rtol), atol 1e-05, rtol 1e-05" in printed.stdout
    assert re.search(r"12 of 9,408 elements fail", printed.stdout), printed.stdout
    judged = compare(
        tmp_path, testdata, "--tolerance", "int8", "--atol", "1e-3", "--rtol", "1e-3", "--save_json", str(tmp_path / "compare.json")
    )
    assert judged.returncode == 1, "the int8 preset passes, the element-wise check does not: the run fails"
    assert "FAIL: element-wise atol 0.001, rtol 0.001 (12 elements fail)" in judged.stdout
    record = read_step(tmp_path / "compare.json")
    elementwise = record["elementwise"]
    assert (elementwise["failing"], elementwise["elements"], elementwise["verdict"]) == (12, 9408, "FAIL")
    assert abs(elementwise["abs"]["max"] - 0.02) < 1e-6 and abs(elementwise["needed_atol"] - 0.02) < 1e-6
    assert elementwise["abs"]["p50"] == 0 and elementwise["nan"] == 0
    assert record["verdict"] == "FAIL" and record["error_plot"]["path"] == "errors.png"
    assert Image.open(tmp_path / "errors.png").size == (1000, 420)
    loose = compare(tmp_path, testdata, "--tolerance", "int8", "--atol", "0.021", "--save_json", str(tmp_path / "compare.json"))
    assert loose.returncode == 0 and "PASS: element-wise atol 0.021, rtol 1e-05 (0 elements fail)" in loose.stdout
    assert read_step(tmp_path / "compare.json")["elementwise"]["verdict"] == "PASS"
    labels = Image.open(tmp_path / "diff.png")
    assert labels.size == (3 * 122 + 2 * 8, 32 + 16), "a 16-pixel band of labels above the three panels"
    assert_clean_error(compare(tmp_path, testdata, "--atol", "-1"), "--atol")
    assert_clean_error(compare(tmp_path, testdata, "--rtol", "nan"), "--rtol")
