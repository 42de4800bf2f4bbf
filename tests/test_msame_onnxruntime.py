import re
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, assert_clean_error, latent, no_torch_env, partial_files, run_script
from gan.files import format_msame_txt, parse_txt
from gan.runs import Run, manifest_path


def reference_txt(array):
    """msame's TXT written the slow, obvious way: C++ ostream defaults (%g, 6 digits), a space after each
    value, a newline after each innermost row."""
    rows = array.reshape(-1, array.shape[-1])
    return "".join("".join(f"{float(v):g} " for v in row) + "\n" for row in rows)


def test_txt_format_is_msames():
    values = np.array([[0.123456789, -1.0, 1.5e-05, 0.0, -0.99999994, 123456.7, 1e-10, 0.5]], np.float32)
    assert format_msame_txt(values) == "0.123457 -1 1.5e-05 0 -1 123457 1e-10 0.5 \n"
    images = np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    text = format_msame_txt(images)
    assert text == reference_txt(images)
    lines = text.split("\n")
    assert len(lines) == 4 * 28 + 1 and lines[-1] == ""
    assert all(len(line.split(" ")) == 29 and line.endswith(" ") for line in lines[:-1]), "28 values, trailing space"


def test_run_folders_sort_by_time_and_are_never_reused(tmp_path):
    folders = [Run(tmp_path, tool="test").dir for _ in range(20)]
    assert len(set(folders)) == 20
    assert sorted(f.name for f in folders) == [f.name for f in folders]
    assert all(re.fullmatch(r"\d{8}_\d{6}_\d{6}", f.name) for f in folders)
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert listing[-1] == folders[-1].name, "the manifests are hidden names: the newest run folder still sorts last"
    assert all(manifest_path(f).is_file() for f in folders)


def test_folder_mode_txt_and_bin(onnx_model, testdata, tmp_path):
    images, vectors = testdata
    env = no_torch_env(tmp_path)
    txt = run_script(
        "msame_onnxruntime.py",
        "--model",
        str(onnx_model),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "out"),
        "--outfmt",
        "TXT",
        env=env,
    )
    time.sleep(0.01)
    run_script("run_msame.sh", f"--model={onnx_model}", f"--input={vectors}", f"--output={tmp_path / 'out'}", "--outfmt", "BIN", env=env)
    lines = txt.stdout.splitlines()
    assert len([line for line in lines if re.fullmatch(r"Inference time: [0-9.e+-]+ms", line)]) == 3
    assert re.search(r"^Inference average time : \d+\.\d{6} ms$", txt.stdout, re.M)
    assert re.search(r"^Inference average time without first time: \d+\.\d{6} ms$", txt.stdout, re.M)
    assert "Execute sample success" in lines[-1]
    run_txt, run_bin = sorted(p for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert lines[-2] == str(run_txt), "the run folder's path is printed as a bare line"
    assert sorted(p.name for p in run_txt.iterdir()) == ["0_output_0.txt", "1_output_0.txt", "2_output_0.txt"]
    for i in range(3):
        online = np.fromfile(images / f"{i}.bin", dtype=np.float32)
        binary = np.fromfile(run_bin / f"{i}_output_0.bin", dtype=np.float32)
        text = parse_txt(run_txt / f"{i}_output_0.txt", 784)
        assert binary.size == 4 * 784
        assert np.abs(binary - online).max() <= 1e-5, "ONNX Runtime vs PyTorch"
        assert np.abs(text - binary).max() <= 1e-6, "TXT reads back within 1e-6 of BIN"


def test_file_mode_loops_and_names_after_model(onnx_model, tmp_path):
    vector = tmp_path / "z.bin"
    latent(2).tofile(vector)
    result = run_script(
        "msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vector), "--output", str(tmp_path / "out"), "--loop", "5"
    )
    assert result.stdout.count("Inference time:") == 5
    assert re.search(r"^Inference average time: \d+\.\d+ ms$", result.stdout, re.M), "file mode: no space before the colon"
    (run,) = [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]
    assert [p.name for p in run.iterdir()] == ["GAN_output_0.bin"]


def test_card_run_over_four_workers_keeps_every_output(onnx_model, tmp_path):
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    for i in range(10):
        latent(3, seed=i).tofile(vectors / f"{i}.bin")
    single = run_script("msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "one"))
    card = run_script(
        "msame_onnxruntime.py",
        "--model",
        str(onnx_model),
        "--input",
        str(vectors),
        "--output",
        str(tmp_path / "card"),
        "--device",
        "0,1,2,3",
    )
    assert "4 worker(s)" in card.stdout and "[INFO] card summary: 4 devices, 10 file(s)" in card.stdout
    (one,), (four,) = [[p for p in (tmp_path / d).iterdir() if p.is_dir()] for d in ("one", "card")]
    names = sorted(p.name for p in four.iterdir())
    assert names == sorted(f"{i}_output_0.bin" for i in range(10))
    for name in names:
        np.testing.assert_array_equal(np.fromfile(one / name, np.float32), np.fromfile(four / name, np.float32))
    assert "Execute sample success" in single.stdout


@pytest.mark.parametrize("size", [0, 399, 401, 4 * 100 * 3 + 8])
def test_input_of_the_wrong_size_is_refused(onnx_model, tmp_path, size):
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    latent(2).tofile(vectors / "0.bin")
    (vectors / "1.bin").write_bytes(b"\0" * size)
    result = run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "out"), check=False)
    assert_clean_error(result, vectors / "1.bin", "not a whole number of rows of 100 float32")
    assert not (tmp_path / "out").exists(), "nothing is written before every input is checked"


def test_empty_missing_and_unwritable(onnx_model, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(
        run_script(
            "msame_onnxruntime.py",
            "--model",
            str(onnx_model),
            "--input",
            str(tmp_path / "empty"),
            "--output",
            str(tmp_path / "out"),
            check=False,
        ),
        tmp_path / "empty",
        "empty",
    )
    assert_clean_error(
        run_script(
            "msame_onnxruntime.py",
            "--model",
            str(tmp_path / "no.onnx"),
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "out"),
            check=False,
        ),
        "no.onnx",
        "no such model",
    )
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    latent(2).tofile(vectors / "0.bin")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_clean_error(
        run_script(
            "msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vectors), "--output", str(blocker / "out"), check=False
        ),
        blocker / "out",
        "cannot create",
    )
    assert not partial_files(tmp_path)
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_text("not onnx")
    assert_clean_error(
        run_script(
            "msame_onnxruntime.py", "--model", str(bad_model), "--input", str(vectors), "--output", str(tmp_path / "out"), check=False
        ),
        bad_model,
        "not a loadable ONNX model",
    )


def test_run_msame_sh_refuses_other_models(tmp_path):
    result = run_script("run_msame.sh", "--model", "GAN.pb", "--input", "v", "--output", "o", check=False)
    assert result.returncode == 2 and "expected a .onnx model" in result.stderr


def block_values(line):
    from gan.perf import parse_stats

    return parse_stats(line)


@pytest.mark.parametrize("devices", ["0", "0,1"])
def test_latency_statistics_are_numpys_on_its_own_samples(onnx_model, testdata, tmp_path, devices):
    import json

    _, vectors = testdata
    out = tmp_path / "out"
    result = run_script(
        "msame_onnxruntime.py",
        "--model",
        str(onnx_model),
        "--input",
        str(vectors),
        "--output",
        str(out),
        "--warmup",
        "3",
        "--loop",
        "4",
        "--device",
        devices,
    )
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in run.iterdir()) == ["0_output_0.bin", "1_output_0.bin", "2_output_0.bin"], (
        "--loop multiplies samples, not outputs"
    )
    calls = [float(v) for v in re.findall(r"^Inference time: ([0-9.e+-]+)ms$", result.stdout, re.M)]
    assert len(calls) == 3 * 4, "warm-up executions are not timed; each batch is timed --loop times"
    assert "warm-up: 3 execution(s) per worker before timing, excluded from every figure" in result.stdout
    summary = json.loads((out / f".{run.name}_summary.json").read_text())
    samples = np.array(summary["npu_compute_time_list"])
    assert len(samples) == 12 and sorted(float(f"{s:g}") for s in samples) == sorted(calls), "the log prints each sample as %g"
    expected = {
        "min": samples.min(),
        "max": samples.max(),
        "mean": samples.mean(),
        "median": np.median(samples),
        "percentile(90%)": np.percentile(samples, 90),
        "percentile(99%)": np.percentile(samples, 99),
        "count": 12,
    }
    assert summary["NPU_compute_time"] == pytest.approx(expected, rel=1e-12)
    assert summary["throughput"] == pytest.approx(1000 * 4 / samples.mean())
    card_block = re.findall(r"^\[INFO\] compute_time \(ms\): (.*)$", result.stdout, re.M)
    assert len(card_block) == 1
    printed = block_values(card_block[0])
    assert printed == pytest.approx(
        {
            "min": expected["min"],
            "max": expected["max"],
            "mean": expected["mean"],
            "median": expected["median"],
            "p90": expected["percentile(90%)"],
            "p99": expected["percentile(99%)"],
        },
        abs=1e-6,
    ), "the log's block matches the summary"
    average = float(re.search(r"^Inference average time : ([0-9.]+) ms$", result.stdout, re.M).group(1))
    assert average == pytest.approx(samples.mean(), abs=1e-6), "msame's line is the mean of the same samples"
    assert re.search(rf"^\[INFO\] throughput 1000\*batchsize\(4\)/compute_time.mean\({expected['mean']:.6f}\): ", result.stdout, re.M)
    workers = summary["per_worker"]
    assert sorted(workers) == devices.split(",") and sum(w["count"] for w in workers.values()) == 12
    if devices == "0,1":
        for device, stats in workers.items():
            line = re.search(rf"^\[INFO\] device {device}: compute_time \(ms\): (.*)$", result.stdout, re.M).group(1)
            assert block_values(line)["mean"] == pytest.approx(stats["mean"], abs=1e-6)
        assert "[INFO] summary throughput:" in result.stdout


def test_thread_count_is_measured_or_fixed(onnx_model, testdata, tmp_path):
    _, vectors = testdata
    measured = run_script("msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "a"))
    line = re.search(r"^\[INFO\] threads per worker: (.*)$", measured.stdout, re.M).group(1)
    import os

    if (os.cpu_count() or 1) > 1:
        timings = dict((int(t), float(ms)) for t, ms in re.findall(r"(\d+): ([0-9.]+) ms", line))
        chosen = int(line.split()[0])
        if "chosen by measurement" in line:
            assert chosen == min(timings, key=timings.get)
        else:  # a loaded machine (the suite runs in parallel): the stated default, every core of the worker
            assert "did not separate beyond their noise" in line and chosen == max(timings)
    fixed = run_script(
        "msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "b"), "--threads", "1"
    )
    assert "[INFO] threads per worker: 1 (fixed)" in fixed.stdout


def test_thread_probe_takes_a_file_s_flat_values(onnx_model):
    from msame_onnxruntime import Runner

    runner = Runner(onnx_model).measure_threads(latent(3).ravel())  # a file's flat values
    assert runner.threads >= 1 and (runner.choice or runner.threads == 1)


def test_start_up_thread_choice_has_a_bounded_cost_on_a_large_file(onnx_model):
    """100,000 rows (40 MB): the choice runs a slice of the file, not the file (the old one ran it about 66 times,
    minutes); its wall time includes making the candidates' sessions."""
    from msame_onnxruntime import PROBE_BUDGET_MS, Runner

    runner = Runner(onnx_model).measure_threads(latent(100_000))
    choice = runner.choice
    if choice is None:
        pytest.skip("one core: nothing to choose")
    print(f"start-up choice on 100,000 rows: {choice.seconds * 1000:.0f} ms, {choice.rows_run:,} rows run; {runner.describe_threads()}")
    assert choice.rows < choice.of_rows == 100_000 and choice.rows_run < 20_000, "a slice, a fraction of one pass over the file"
    assert choice.seconds < 1.0, f"budget {PROBE_BUDGET_MS} ms of timing, plus the sessions: at most a few hundred ms"
    assert choice.threads == (min(choice.best, key=choice.best.get) if choice.separated else max(choice.best))
    assert ("chosen by measurement" if choice.separated else "did not separate beyond their noise") in runner.describe_threads()


def test_commands_written_for_msame_or_ais_bench_run_unchanged(onnx_model, testdata, tmp_path):
    """msame's --debug/--profiler/--dump and ais_bench's --om, -i, -o, --batchsize, --warmup_count, --display_all_summary:
    accepted; those with no meaning on ONNX Runtime are named in the log as ignored."""
    _, vectors = testdata
    msame = run_script(
        "run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "a"),
        "--outfmt", "TXT", "--debug", "true", "--profiler", "false", "--dump", "false", "--loop", "1",
    )  # fmt: skip
    assert "[INFO] ignored on ONNX Runtime" in msame.stdout and "--debug true, --profiler false, --dump false" in msame.stdout
    ais = run_script(
        "msame_onnxruntime.py", "--om", str(onnx_model), "-i", str(vectors), "-o", str(tmp_path / "b"), "--batchsize", "16",
        "--warmup_count", "2", "-l", "2", "--display_all_summary", "--device", "0",
    )  # fmt: skip
    assert "--batchsize 16, --display_all_summary true" in ais.stdout
    assert "warm-up: 2 execution(s) per worker" in ais.stdout and "executed 2 time(s)" in ais.stdout
    assert len(re.findall(r"^Inference time:", ais.stdout, re.M)) == 2 * 3
    plain = run_script("msame_onnxruntime.py", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "c"))
    assert "ignored" not in plain.stdout


def test_dymbatch_is_checked_against_every_input(onnx_model, testdata, tmp_path):
    _, vectors = testdata
    ok = run_script("run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "a"), "--dymBatch", "4")
    assert "Execute sample success" in ok.stdout
    wrong = run_script(
        "run_msame.sh", "--model", str(onnx_model), "--input", str(vectors), "--output", str(tmp_path / "b"), "--dymBatch", "8", check=False
    )
    assert wrong.returncode == 1 and assert_clean_error(wrong, "0.bin", "4 rows", "exactly 8")
    assert not (tmp_path / "b").exists()


def test_the_address_space_limit_is_checked_before_a_huge_batch(onnx_model, tmp_path):
    """ulimit -v as well as MemAvailable: a 100,000-row batch is refused in one line naming it, not ONNX Runtime's traceback."""
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    with open(vectors / "0.bin", "wb") as f:
        f.truncate(100_000 * 100 * 4)
    command = f"ulimit -v 1200000; exec bash {ROOT / 'run_msame.sh'} --model {onnx_model} --input {vectors} --output {tmp_path / 'out'}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.returncode == 1 and assert_clean_error(result, "0.bin", "100,000 rows", "address-space limit (ulimit -v 1200000)")
    assert not (tmp_path / "out").exists()


def test_an_allocation_failure_inside_onnx_runtime_is_one_line_naming_the_batch(onnx_model, testdata, tmp_path):
    from gan.cli import InputError
    from msame_onnxruntime import Runner

    _, vectors = testdata
    runner = Runner(onnx_model)

    class Session:
        def __init__(self, session):
            self.session = session

        def run_with_iobinding(self, binding):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 3136")

        def __getattr__(self, name):
            return getattr(self.session, name)

    runner.session = Session(runner.session)
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match=r"0\.bin: a batch of 4 rows: ONNX Runtime could not allocate memory .*smaller batches"):
        runner.run_files([vectors / "0.bin"], tmp_path / "run", "BIN")
