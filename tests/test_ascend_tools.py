"""atc_convert.sh and run_msame.sh on .om models, against the test doubles in tests/doubles/ (NOT the real tools)."""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_clean_error, run_script

DOUBLES = ROOT / "tests" / "doubles"


def env_with(**extra):
    """PATH with the doubles first (so `atc` and `msame` are the doubles), PYTHONPATH for `-m ais_bench`."""
    env = dict(os.environ)
    env["PATH"] = f"{DOUBLES}:{env['PATH']}"
    env["PYTHONPATH"] = str(DOUBLES)
    env.pop("ASCEND_TOOLKIT_HOME", None)
    env.update(extra)
    return env


def compare(images, out, *extra, check=True):
    """GAN_compare.py of an offline run against the online outputs, drawing no picture."""
    return run_script(
        "GAN_compare.py", f"--online_path={images}", f"--offline_path={out}", "--diff_image", "", "--error_plot", "", *extra, check=check
    )


def env_without_tools():
    env = dict(os.environ)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if not (shutil.which("atc", path=p) or shutil.which("msame", path=p)))
    env.pop("ASCEND_TOOLKIT_HOME", None)
    env.pop("MSAME_BIN", None)
    return env


@pytest.fixture(scope="module")
def om_models(onnx_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("om")
    result = run_script("atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(folder / "GAN_bs"), env=env_with())
    assert re.search(r"^batch 64\s+\S+GAN_bs64\.om\s+ok", result.stdout, re.M), result.stdout
    return folder


def test_dry_run_prints_the_three_commands(onnx_model):
    result = run_script("atc_convert.sh", "--onnx", str(onnx_model), "--dry_run", env=env_without_tools())
    check, *lines = result.stdout.strip().splitlines()
    assert check == f"# check: {onnx_model} passes what atc of CANN 5.0.4 checks for Ascend310 (opset, operators, batch)"
    assert lines == [
        f"atc --model={onnx_model} --framework=5 --output=GAN_bs{b} --input_format=NCHW --input_shape=Z:{b},100 "
        f"--log=error --soc_version=Ascend310"
        for b in (1, 16, 64)
    ]


def test_input_name_and_size_come_from_the_onnx_file(tmp_path):
    path = tmp_path / "other.onnx"
    torch.onnx.export(
        torch.nn.Linear(64, 8),
        torch.zeros(1, 64),
        str(path),
        input_names=["latent"],
        opset_version=11,
        dynamic_axes={"latent": {0: "batch"}},
        dynamo=False,
    )
    result = run_script(
        "atc_convert.sh",
        "--onnx",
        str(path),
        "--dry_run",
        "--batch_sizes",
        "4",
        "--precision_mode",
        "must_keep_origin_dtype",
        "--soc_version",
        "Ascend310P3",
    )
    assert result.stdout.strip().splitlines()[-1] == (
        f"atc --model={path} --framework=5 --output=GAN_bs4 --input_format=NCHW "
        f"--input_shape=latent:4,64 --log=error --soc_version=Ascend310P3 "
        f"--precision_mode=must_keep_origin_dtype"
    )


def test_conversion_judged_by_log_and_file(onnx_model, tmp_path):
    ok = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--output_prefix",
        str(tmp_path / "A_bs"),
        "--batch_sizes",
        "1",
        env=env_with(ATC_DOUBLE_SUFFIX="1"),
    )
    assert (
        (tmp_path / "A_bs1_linux_x86_64.om").is_file() and "A_bs1_linux_x86_64.om" in ok.stdout and (tmp_path / "A_bs1.atc.log").is_file()
    )
    no_om = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--output_prefix",
        str(tmp_path / "B_bs"),
        "--batch_sizes",
        "1 16",
        env=env_with(ATC_DOUBLE_NO_OM="1"),
        check=False,
    )
    assert no_om.returncode == 1 and no_om.stdout.count("printed success but wrote no new B_bs") == 2
    assert not list(tmp_path.glob("B_bs*.atc.json")), "no record of a conversion that failed"
    bad_soc = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--output_prefix",
        str(tmp_path / "C_bs"),
        "--batch_sizes",
        "1",
        "--soc_version",
        "Ascend999",
        env=env_with(),
        check=False,
    )
    assert bad_soc.returncode == 1 and "Soc version [Ascend999] is invalid" in bad_soc.stdout


def test_atc_missing_and_found_through_set_env(onnx_model, tmp_path):
    missing = run_script("atc_convert.sh", "--onnx", str(onnx_model), env=env_without_tools(), check=False)
    assert_clean_error(missing, "atc not found", "/usr/local/Ascend/ascend-toolkit/set_env.sh", "--dry_run")
    toolkit = tmp_path / "toolkit"
    toolkit.mkdir()
    (toolkit / "set_env.sh").write_text(f'export PATH="{DOUBLES}:$PATH"\n')
    env = env_without_tools()
    env["ASCEND_TOOLKIT_HOME"] = str(toolkit)
    found = run_script(
        "atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(tmp_path / "G_bs"), "--batch_sizes", "1", env=env
    )
    assert (tmp_path / "G_bs1.om").is_file() and "ATC run success" in found.stdout


def msame_run(om_models, vectors, out, *extra, **env):
    return run_script(
        "run_msame.sh",
        "--model",
        str(om_models / "GAN_bs4.om"),
        "--input",
        str(vectors),
        "--output",
        str(out),
        *extra,
        env=env_with(**env),
        check=False,
    )


@pytest.fixture(scope="module")
def om_bs4(onnx_model, om_models):
    run_script(
        "atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(om_models / "GAN_bs"), "--batch_sizes", "4", env=env_with()
    )
    return om_models


def test_msame_success_is_checked_and_outputs_read(om_bs4, testdata, tmp_path):
    images, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", "--outfmt", "TXT")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[INFO] 3 outputs for 3 inputs" in result.stdout and "Execute sample success" in result.stdout
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(p.name for p in run.iterdir()) == ["0_output_0.txt", "1_output_0.txt", "2_output_0.txt"]
    assert (tmp_path / "out" / f".{run.name}.log").is_file() and str(run) in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[-1] == run.name, "upstream's last sorted entry is the run"
    manifest = json.loads((tmp_path / "out" / f".{run.name}.manifest.json").read_text())
    assert (manifest["status"], manifest["tool"], manifest["output_count"]) == ("complete", "msame", 3)
    fp16 = compare(images, tmp_path / "out", "--tolerance", "fp16")
    assert "PASS: fp16" in fp16.stdout, "atc's default force_fp16 output passes the fp16 preset"
    fp32 = compare(images, tmp_path / "out", check=False)
    assert fp32.returncode == 1, "...and is rightly refused by the fp32 preset"
    run_script("GAN_txt2jpg.py", f"--txt_path={tmp_path / 'out'}", f"--infer_results_path={tmp_path / 'gen'}")
    assert len(list((tmp_path / "gen").glob("*.jpg"))) == 3
    perf = run_script("perf_calc.py", "--log", str(tmp_path / "out" / f".{run.name}.log"), "--json")
    row = json.loads(perf.stdout)["logs"][0]
    assert (row["tool"], row["batch_size"], row["chips"]) == ("msame", 4, 4), "one chip of a 310 card: the ModelZoo x4"
    assert "x4" in row["chips_rule"] and "Ascend310" in row["chips_rule"]


def test_error_with_exit_0_is_a_failure(om_bs4, testdata, tmp_path):
    _, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", MSAME_DOUBLE_FAIL_DEVICES="0")
    assert result.returncode == 1 and "msame failed on device(s) 0: [ERROR] execute model failed" in result.stderr
    (run,) = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert not list(run.iterdir()), "nothing gathered"
    assert json.loads((tmp_path / "out" / f".{run.name}.manifest.json").read_text())["status"] == "failed"
    images, _ = testdata
    refused = run_script("GAN_compare.py", f"--online_path={images}", f"--offline_path={tmp_path / 'out'}", "--error_plot", "", check=False)
    assert_clean_error(refused, run, "incomplete run, failed")


def test_fewer_outputs_than_inputs_is_a_failure(om_bs4, testdata, tmp_path):
    _, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", MSAME_DOUBLE_DROP="1")
    assert result.returncode == 1 and "2 outputs for 3 inputs (missing 1)" in result.stderr


def test_wrong_batch_model_is_a_failure(om_models, testdata, tmp_path):
    _, vectors = testdata  # batches of 4 into a batch-16 model: msame reports [ERROR] per file and still exits 0
    result = run_script(
        "run_msame.sh",
        "--model",
        str(om_models / "GAN_bs16.om"),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        env=env_with(),
        check=False,
    )
    assert result.returncode == 1 and "0 outputs for 3 inputs" in result.stderr


def test_msame_missing(om_bs4, testdata, tmp_path):
    _, vectors = testdata
    result = run_script(
        "run_msame.sh",
        "--model",
        str(om_bs4 / "GAN_bs4.om"),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        env=env_without_tools(),
        cwd=tmp_path,
        check=False,
    )
    assert_clean_error(result, "msame not found", "$MSAME_BIN", "--tool ais_bench")
    explicit = run_script(
        "run_msame.sh",
        "--model",
        str(om_bs4 / "GAN_bs4.om"),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        "--msame",
        str(DOUBLES / "msame"),
        env=env_without_tools(),
        cwd=tmp_path,
    )
    assert "3 outputs for 3 inputs" in explicit.stdout


def test_card_run_returns_every_output_exactly_once(om_bs4, tmp_path):
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    for i in range(10):
        np.random.default_rng(i).standard_normal((4, 100), dtype=np.float32).tofile(vectors / f"{i}.bin")
    single = msame_run(om_bs4, vectors, tmp_path / "one")
    card = msame_run(om_bs4, vectors, tmp_path / "card", "--device", "0,1,2,3")
    assert single.returncode == 0 and card.returncode == 0, card.stdout + card.stderr
    (one,) = [p for p in (tmp_path / "one").iterdir() if p.is_dir()]
    (four,) = [p for p in (tmp_path / "card").iterdir() if p.is_dir()]
    names = sorted(p.name for p in four.iterdir())
    assert names == sorted(f"{i}_output_0.bin" for i in range(10))
    for name in names:
        assert (four / name).read_bytes() == (one / name).read_bytes()
    for device in range(4):
        assert f"[device {device}] [INFO] pid:" in card.stdout
    assert "[INFO] card summary: 4 devices" in card.stdout and "[INFO] 10 outputs for 10 inputs" in card.stdout
    log = next((tmp_path / "card").glob("*.log"))
    row = json.loads(run_script("perf_calc.py", "--log", str(log), "--json").stdout)["logs"][0]
    assert row["chips"] == 4
    calls = [float(v) for v in re.findall(r"^\[device \d\] Inference time: ([0-9.e+-]+)ms$", log.read_text(), re.M)]
    assert len(calls) == 10, "every chip's per-call times, pooled"
    assert row["p50_ms"] == pytest.approx(np.median(calls), abs=1e-6) and row["p99_ms"] == pytest.approx(np.percentile(calls, 99), abs=1e-6)


def test_one_chip_failing_in_a_card_run(om_bs4, testdata, tmp_path):
    _, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", "--device", "0,1,2", MSAME_DOUBLE_FAIL_DEVICES="2")
    assert result.returncode == 1 and "failed on device(s) 2" in result.stderr
    assert "[device 0] [INFO] pid:" in result.stdout
    (run,) = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    staging = tmp_path / "out" / f".{run.name}.staging"
    assert not list(run.iterdir()) and (staging / "device2.log").is_file() and (staging / "run.log").is_file(), (
        "kept for inspection, not presented as a run"
    )
    assert str(staging) in result.stderr


def test_ais_bench(om_bs4, testdata, tmp_path):
    images, vectors = testdata
    result = msame_run(om_bs4, vectors, tmp_path / "out", "--tool", "ais_bench", "--device", "0,1")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".bin") == ["0_0.bin", "1_0.bin", "2_0.bin"]
    assert sorted(p.name for p in (tmp_path / "out").glob(".*_summary.json")) == [f".{run.name}.device{d}_summary.json" for d in (0, 1)]
    assert sorted(p.name for p in run.iterdir()) == ["0_0.bin", "1_0.bin", "2_0.bin"], "a run folder holds outputs only"
    assert "PASS: fp16" in compare(images, tmp_path / "out", "--tolerance", "fp16").stdout
    log = next((tmp_path / "out").glob("*.log"))
    row = json.loads(run_script("perf_calc.py", "--log", str(log), "--json").stdout)["logs"][0]
    assert (row["tool"], row["batch_size"], row["chips"]) == ("ais_bench", 4, 2)
    pooled = [
        t
        for d in (0, 1)
        for t in json.loads((tmp_path / "out" / f".{run.name}.device{d}_summary.json").read_text())["npu_compute_time_list"]
    ]
    assert row["latency_ms"] == pytest.approx(np.mean(pooled), abs=1e-6) and row["p99_ms"] == pytest.approx(
        np.percentile(pooled, 99), abs=1e-6
    )
    failing = msame_run(om_bs4, vectors, tmp_path / "out2", "--tool", "ais_bench", AIS_DOUBLE_FAIL_DEVICES="0")
    assert failing.returncode == 1 and "ais_bench failed on device(s) 0" in failing.stderr


GEARS = "1,4,8,16,32,64"


@pytest.fixture(scope="module")
def dynamic_om(onnx_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dyn")
    result = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--dynamic_batch_size",
        GEARS,
        "--dynamic_output",
        str(folder / "GAN_dyn"),
        env=env_with(),
    )
    assert "ok" in result.stdout
    return folder / "GAN_dyn.om"


def test_dynamic_batch_conversion(onnx_model, dynamic_om, tmp_path):
    dry = run_script("atc_convert.sh", "--onnx", str(onnx_model), "--dynamic_batch_size", GEARS, "--dry_run")
    assert dry.stdout.strip().splitlines()[-1] == (
        f"atc --model={onnx_model} --framework=5 --output=GAN_dyn --input_format=NCHW "
        f"--input_shape=Z:-1,100 --dynamic_batch_size={GEARS} --log=error --soc_version=Ascend310"
    )
    record = json.loads(dynamic_om.with_name("GAN_dyn.atc.json").read_text())
    assert record["dynamic_batch_size"] == [1, 4, 8, 16, 32, 64] and record["input"] == "Z"
    assert record["om"] == {
        "name": "GAN_dyn.om",
        "size": dynamic_om.stat().st_size,
        "sha256": hashlib.sha256(dynamic_om.read_bytes()).hexdigest(),
    }
    for gears in ("4", "0,4", ",".join(str(g) for g in range(1, 103)), "4,4", "1,4096", "", "a,b"):
        result = run_script("atc_convert.sh", "--onnx", str(onnx_model), "--dynamic_batch_size", gears, "--dry_run", check=False)
        line = assert_clean_error(result, "--dynamic_batch_size")
        assert result.returncode == 2 and ("atc takes 2 to 100 distinct gears" in line or "comma-separated whole numbers" in line), line


def vectors_of(folder, rows, count=3):
    folder.mkdir()
    for i in range(count):
        np.random.default_rng(i).standard_normal((rows, 100), dtype=np.float32).tofile(folder / f"{i}.bin")
    return folder


@pytest.mark.parametrize("tool", ["ais_bench", "msame"])
def test_dynamic_batch_runs_and_is_checked(dynamic_om, tmp_path, tool):
    vectors = vectors_of(tmp_path / "v8", 8)
    ok = run_script(
        "run_msame.sh",
        "--model",
        str(dynamic_om),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        "--tool",
        tool,
        "--dymBatch",
        "8",
        env=env_with(),
    )
    (run,) = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert all(p.stat().st_size == 8 * 784 * 4 for p in run.iterdir()) and "--dymBatch 8" in ok.stdout
    wrong_gear = run_script(
        "run_msame.sh",
        "--model",
        str(dynamic_om),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "o2"),
        "--tool",
        tool,
        "--dymBatch",
        "5",
        env=env_with(),
        check=False,
    )
    assert_clean_error(wrong_gear, "--dymBatch 5: not a gear of GAN_dyn.om", GEARS, "GAN_dyn.atc.json")
    assert not (tmp_path / "o2").exists(), "refused before anything ran"
    wrong_rows = run_script(
        "run_msame.sh",
        "--model",
        str(dynamic_om),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "o3"),
        "--tool",
        tool,
        "--dymBatch",
        "4",
        env=env_with(),
        check=False,
    )
    assert_clean_error(wrong_rows, vectors / "0.bin", "8 rows, but the model takes batches of exactly 4")
    no_gear = run_script(
        "run_msame.sh",
        "--model",
        str(dynamic_om),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "o4"),
        "--tool",
        tool,
        env=env_with(),
        check=False,
    )
    assert_clean_error(no_gear, "a dynamic-batch model", "pass --dymBatch N")


def test_dynamic_batch_errors_the_tools_report(dynamic_om, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(dynamic_om, lone / "GAN_dyn.om")  # no .atc.json beside it: only the tool can tell a wrong gear
    vectors = vectors_of(tmp_path / "v5", 5)
    result = run_script(
        "run_msame.sh",
        "--model",
        str(lone / "GAN_dyn.om"),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        "--tool",
        "ais_bench",
        "--dymBatch",
        "5",
        env=env_with(),
        check=False,
    )
    assert_clean_error(result, "ais_bench failed on device(s) 0", "the dymBatch parameter is not correct")
    vectors = vectors_of(tmp_path / "v4", 4)
    ignored = run_script(
        "run_msame.sh",
        "--model",
        str(dynamic_om),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "o2"),
        "--dymBatch",
        "4",
        env=env_with(MSAME_DOUBLE_IGNORE_DYMBATCH="1"),
        check=False,
    )
    assert_clean_error(
        ignored, "msame failed on device(s) 0", "3 outputs with the wrong number of images", "0_output_0.bin: 64 images for 4 input rows"
    )
    (run,) = [p for p in (tmp_path / "o2").iterdir() if not p.name.startswith(".")]
    assert not list(run.iterdir()) and json.loads((tmp_path / "o2" / f".{run.name}.manifest.json").read_text())["status"] == "failed"


def test_output_path_holding_bin_keeps_msame_in_folder_mode(om_bs4, testdata, tmp_path):
    import tempfile

    _, vectors = testdata
    before = set(Path(tempfile.gettempdir()).glob("gan_msame_inputs_*"))
    out = tmp_path / "a.binaries" / "out"
    result = msame_run(om_bs4, vectors, out)
    assert result.returncode == 0 and "[INFO] 3 outputs for 3 inputs" in result.stdout, result.stdout + result.stderr
    assert set(Path(tempfile.gettempdir()).glob("gan_msame_inputs_*")) == before, "the symlink folder outside is removed"


def test_each_om_is_found_by_its_exact_name(onnx_model, tmp_path):
    (tmp_path / "X_bs16.om").write_bytes(b"a fresh .om of another batch size")  # GAN_bs1* used to match it
    result = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--output_prefix",
        str(tmp_path / "X_bs"),
        "--batch_sizes",
        "1",
        env=env_with(ATC_DOUBLE_NO_OM="1"),
        check=False,
    )
    assert result.returncode == 1 and "printed success but wrote no new X_bs1.om" in result.stdout
    assert result.stderr.strip().splitlines() == ["atc_convert.sh: error: 1 of 1 conversions failed (batch 1): see each one's log above"]
    assert not (tmp_path / "X_bs1.atc.json").exists()


def test_a_record_must_match_its_om(onnx_model, tmp_path):
    """A failed conversion leaves the good record and .om usable; a changed .om or a hand-edited record is refused."""
    folder = tmp_path / "models"
    run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--dynamic_batch_size",
        GEARS,
        "--dynamic_output",
        str(folder / "GAN_dyn"),
        env=env_with(),
    )
    record_path = folder / "GAN_dyn.atc.json"
    good_record = record_path.read_bytes()
    failed = run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--dynamic_batch_size",
        "2,3",
        "--dynamic_output",
        str(folder / "GAN_dyn"),
        "--soc_version",
        "Ascend999",
        env=env_with(),
        check=False,
    )
    assert failed.returncode == 1 and record_path.read_bytes() == good_record, "a failed conversion writes no record"
    vectors = vectors_of(tmp_path / "v8", 8)

    def run(out, **env):
        return run_script(
            "run_msame.sh",
            "--model",
            str(folder / "GAN_dyn.om"),
            "--input",
            str(vectors),
            "--output",
            str(tmp_path / out),
            "--tool",
            "ais_bench",
            "--dymBatch",
            "8",
            env=env_with(**env),
            check=False,
        )

    assert run("o1").returncode == 0, "the unchanged .om with its record still runs"
    om = folder / "GAN_dyn.om"
    om.write_bytes(om.read_bytes() + b"\0")
    line = assert_clean_error(run("o2"), om, "does not match its record GAN_dyn.atc.json", "convert it again")
    assert not (tmp_path / "o2").exists(), "refused before anything ran"
    om.write_bytes(om.read_bytes()[:-1])
    record = json.loads(good_record)
    record["dynamic_batch_size"] = "1,4,8"
    record_path.write_text(json.dumps(record))
    line = assert_clean_error(run("o3"), record_path, "dynamic_batch_size should be a list")
    assert "Traceback" not in line and not (tmp_path / "o3").exists()
    record_path.unlink()
    os.mkfifo(record_path)  # a named pipe where the record was: refused at once, never waited on
    assert_clean_error(run("o4"), record_path, "not a regular file")


# ---------------------------------------------------------------------------------------------------------
# --keep_dtype reaches atc; the model is checked for what atc would refuse before atc sees it.


def test_keep_dtype_file_is_passed_to_atc(onnx_model, tmp_path):
    import sys

    sys.path.insert(0, str(DOUBLES))
    from om_double import read_om

    keep = tmp_path / "keep_dtype.cfg"
    keep.write_text("/model/model.3/BatchNormalization\nOpType::Tanh\n")
    result = run_script(
        "atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(tmp_path / "K_bs"), "--batch_sizes", "4",
        "--keep_dtype", str(keep), env=env_with(),
    )  # fmt: skip
    assert f"--precision_mode=force_fp16 --keep_dtype={keep}" in result.stdout, "force_fp16 added: atc applies the file with a mode"
    meta, _ = read_om(tmp_path / "K_bs4.om")
    assert meta["keep_dtype"] == ["/model/model.3/BatchNormalization", "OpType::Tanh"] and meta["precision_mode"] == "force_fp16"
    record = json.loads((tmp_path / "K_bs4.atc.json").read_text())
    assert record["keep_dtype"]["operators"] == meta["keep_dtype"]
    assert record["keep_dtype"]["sha256"] == hashlib.sha256(keep.read_bytes()).hexdigest()
    for content, name, reason in [
        ("/model/model.99/Gemm\n", "keep_dtype.cfg", "'/model/model.99/Gemm' is neither an operator name of"),
        ("\n\n", "keep_dtype.cfg", "no operator name"),
        ("/model/model.3/BatchNormalization\n", "keep dtype.cfg", "letters, digits"),
    ]:
        bad = tmp_path / name
        bad.write_text(content)
        refused = run_script("atc_convert.sh", "--onnx", str(onnx_model), "--keep_dtype", str(bad), "--dry_run", check=False)
        assert refused.returncode == 1 and assert_clean_error(refused, bad, reason)
    mode = run_script(
        "atc_convert.sh", "--onnx", str(onnx_model), "--keep_dtype", str(keep), "--precision_mode", "must_keep_origin_dtype", "--dry_run",
        check=False,
    )  # fmt: skip
    assert mode.returncode == 2 and assert_clean_error(mode, "no effect with --precision_mode must_keep_origin_dtype")


def opset18_model(path):
    """What the upstream sample's export writes on torch >= 2.9 (the new exporter): opset 18, weights as external data."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((100, 784), np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["Z", "W"], ["y"], name="node_MatMul_0"),
            helper.make_node("Tanh", ["y"], ["generateimg"], name="node_Tanh_1"),
        ],
        "main_graph",
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["s0", 100])],
        [helper.make_tensor_value_info("generateimg", TensorProto.FLOAT, ["s0", 784])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)


def test_the_check_refuses_what_atc_would_and_can_be_overridden(onnx_model, tmp_path):
    new_exporter = tmp_path / "upstream_dynamo.onnx"
    opset18_model(new_exporter)
    for flags in ([], ["--dry_run"]):
        refused = run_script("atc_convert.sh", "--onnx", str(new_exporter), *flags, env=env_with(), check=False)
        assert refused.returncode == 1 and assert_clean_error(refused, new_exporter, "1 problem(s)", "nothing converted", "--ignore_check")
        assert f"# atc would refuse: {new_exporter}: opset 18: atc of CANN 5.0.4 accepts ai.onnx opsets 9 to 13" in refused.stdout
        assert "atc --model" not in refused.stdout and not list(tmp_path.glob("*.om"))
    newer = run_script("atc_convert.sh", "--onnx", str(new_exporter), "--cann_version", "7.0", "--dry_run")
    assert "# check: " in newer.stdout, "CANN 7.0's atc takes opsets 9 to 18"
    ignored = run_script("atc_convert.sh", "--onnx", str(new_exporter), "--ignore_check", "--dry_run")
    assert "# warning (--ignore_check): " in ignored.stdout and ignored.stdout.count("atc --model") == 3

    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_model))  # an operator atc does not list (Ascend310, CANN 5.0.4), and one of another domain
    model.graph.node.append(helper.make_node("IsNaN", ["generateimg"], ["e"], name="odd_isnan"))
    model.graph.node.append(helper.make_node("FusedGemm", ["e", "e"], ["f"], name="ms_gemm", domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model.graph.output.append(helper.make_tensor_value_info("f", onnx.TensorProto.FLOAT, None))
    unlisted = tmp_path / "unlisted.onnx"
    onnx.save(model, str(unlisted))
    refused = run_script("atc_convert.sh", "--onnx", str(unlisted), "--dry_run", check=False)
    assert "node odd_isnan (IsNaN): not in atc's ONNX operator list for Ascend310 (CANN 5.0.4: https://www.hiascend.com/" in refused.stdout
    assert "node ms_gemm (FusedGemm): operator domain com.microsoft: atc reads ai.onnx operators only" in refused.stdout
    assert_clean_error(refused, unlisted, "2 problem(s)")
    p3 = run_script("atc_convert.sh", "--onnx", str(unlisted), "--dry_run", "--soc_version", "Ascend310P3", check=False)
    assert "odd_isnan" not in p3.stdout and assert_clean_error(p3, "1 problem(s)"), "CANN 8.0.0 lists IsNaN for the 310P family"


def test_the_check_reads_the_batch_dimension(tmp_path):
    fixed = tmp_path / "GAN_fixed64.onnx"
    torch.onnx.export(torch.nn.Linear(100, 784), torch.zeros(64, 100), str(fixed), input_names=["Z"], opset_version=11, dynamo=False)
    ok = run_script("atc_convert.sh", "--onnx", str(fixed), "--batch_sizes", "64", "--dry_run")
    assert ok.stdout.startswith("# check: ")
    wrong = run_script("atc_convert.sh", "--onnx", str(fixed), "--dry_run", check=False)
    assert "input Z: a fixed batch of 64: --input_shape with batch 1, 16 does not match it" in wrong.stdout
    dynamic = run_script("atc_convert.sh", "--onnx", str(fixed), "--dynamic_batch_size", "1,64", "--dry_run", check=False)
    assert "--dynamic_batch_size needs a dynamic one" in dynamic.stdout and dynamic.returncode == 1


def test_the_model_reader_agrees_with_onnx(onnx_model):
    """gan/atc_onnx reads the protobuf itself (a CANN host may lack onnx): the same opsets, nodes and input as onnx."""
    import onnx

    from gan.atc_onnx import read_structure

    model = onnx.load(str(onnx_model))
    read = read_structure(onnx_model.read_bytes())
    assert read["opsets"] == {o.domain: o.version for o in model.opset_import}
    assert read["nodes"] == [(n.name, n.op_type, n.domain) for n in model.graph.node]
    assert read["inputs"] == [("Z", ["batch", 100])], "a dynamic batch (a named dimension), 100 features"
