"""perf_sweep.py on tiny workloads: its three files, a real plot, and the same sweep through the Ascend doubles."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from test_ascend_tools import env_with

from conftest import assert_clean_error, no_torch_env, run_script


def check_sweep(folder, batches, tool):
    result = json.loads((folder / "sweep.json").read_text())
    rows = result["rows"]
    assert [r["batch_size"] for r in rows] == batches and all(r["tool"] == tool for r in rows)
    for row in rows:
        assert row["images_per_s_per_chip"] == pytest.approx(1000 * row["batch_size"] / row["latency_ms"])
        assert row["images_per_s_per_card"] == pytest.approx(row["images_per_s_per_chip"] * row["chips"])
        assert row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"] > 0
    best = max(rows, key=lambda r: r["images_per_s_per_card"])
    assert result["best_batch"] == best["batch_size"]
    table = (folder / "sweep.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == [f"bs{b}" for b in batches] + ["最优batch (best)"]
    assert (
        table[-1]
        .split("|")[2]
        .strip()
        .replace("not named: ", "")
        .startswith(f"{best['images_per_s_per_card']:,.2f} (bs{best['batch_size']})")
    )
    spreads = [r["spread"] for r in rows]
    if tool == "onnxruntime":  # the runner's spread in every row; the best named only beyond it
        assert all(s["blocks"] >= 2 and s["cv"] >= 0 for s in spreads) and isinstance(result["best_separated"], bool)
        assert ("not named" in table[-1]) == (not result["best_separated"])
    elif tool == "msame":  # msame's folder mode prints one average: no spread, the best by its mean only
        assert spreads == [None] * len(rows) and result["best_separated"] is None and "by its mean only" in table[-1]
    picture = Image.open(folder / "sweep.png")
    picture.load()  # a real, complete PNG
    assert picture.format == "PNG" and picture.size == (800, 600)
    assert len(np.unique(np.asarray(picture.convert("L")))) > 20, "something is drawn"
    return rows


def test_sweep_on_onnx_runtime_without_torch(onnx_model, tmp_path):
    out = tmp_path / "sweep"
    result = run_script(
        "perf_sweep.py",
        "--model",
        str(onnx_model),
        "--batch_sizes",
        "1,4,8",
        "--images",
        "32",
        "--warmup",
        "2",
        "--output",
        str(out),
        env=no_torch_env(tmp_path),
    )
    rows = check_sweep(out, [1, 4, 8], "onnxruntime")
    assert [r["images"] for r in rows] == [32, 32, 32] and [r["batches"] for r in rows] == [32, 8, 4]
    assert all(r["chips"] == 1 for r in rows), "one CPU worker: the card is the chip"
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["bs1.log", "bs4.log", "bs8.log"]
    assert not (out / "work").exists(), "inputs and outputs are removed unless --keep_work"
    assert "best batch:" in result.stdout
    again = run_script(
        "perf_sweep.py", "--model", str(onnx_model), "--batch_sizes", "1,4", "--images", "8", "--output", str(out), "--keep_work"
    )
    assert (out / "work" / "inputs_bs4").is_dir()
    refused = run_script(
        "perf_sweep.py", "--model", str(onnx_model), "--batch_sizes", "1", "--images", "8", "--output", str(out), check=False
    )
    assert_clean_error(refused, out / "work", "left by an earlier sweep")
    assert again.returncode == 0


def test_sweep_rounds_images_to_whole_batches(onnx_model, tmp_path):
    run_script(
        "perf_sweep.py",
        "--model",
        str(onnx_model),
        "--batch_sizes",
        "3,64",
        "--images",
        "10",
        "--warmup",
        "0",
        "--output",
        str(tmp_path / "s"),
    )
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())["rows"]
    assert [(r["batches"], r["images"]) for r in rows] == [(3, 9), (1, 64)]


@pytest.fixture(scope="module")
def om_family(onnx_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("om_sweep")
    run_script(
        "atc_convert.sh", "--onnx", str(onnx_model), "--output_prefix", str(folder / "GAN_bs"), "--batch_sizes", "1 4", env=env_with()
    )
    run_script(
        "atc_convert.sh",
        "--onnx",
        str(onnx_model),
        "--dynamic_batch_size",
        "1,4",
        "--dynamic_output",
        str(folder / "GAN_dyn"),
        env=env_with(),
    )
    return folder


def test_sweep_over_static_om_models_with_msame(om_family, tmp_path):
    out = tmp_path / "sweep"
    run_script(
        "perf_sweep.py",
        "--model",
        str(om_family / "GAN_bs{N}.om"),
        "--batch_sizes",
        "1,4",
        "--images",
        "8",
        "--output",
        str(out),
        env=env_with(),
    )
    rows = check_sweep(out, [1, 4], "msame")
    assert [r["chips"] for r in rows] == [4, 4], "one chip of an Ascend310: the card figure is x4 (ModelZoo)"
    assert [re.sub(r".*/", "", r["model"]) for r in rows] == ["GAN_bs1.om", "GAN_bs4.om"]
    assert "msame has no warm-up" in (out / "logs" / "bs1.log").read_text()


def test_sweep_over_one_dynamic_om_with_ais_bench(om_family, tmp_path):
    out = tmp_path / "sweep"
    run_script(
        "perf_sweep.py",
        "--model",
        str(om_family / "GAN_dyn.om"),
        "--batch_sizes",
        "1,4",
        "--images",
        "8",
        "--chips_per_card",
        "1",
        "--output",
        str(out),
        env=env_with(),
    )
    rows = check_sweep(out, [1, 4], "ais_bench")
    assert [r["chips"] for r in rows] == [1, 1]
    assert "--dymBatch 4" in (out / "logs" / "bs4.log").read_text()
    wrong = run_script(
        "perf_sweep.py",
        "--model",
        str(om_family / "GAN_dyn.om"),
        "--batch_sizes",
        "1,8",
        "--images",
        "8",
        "--output",
        str(tmp_path / "s2"),
        env=env_with(),
        check=False,
    )
    assert_clean_error(wrong, "bs8.log", "failed at batch 8", "--dymBatch 8: not a gear")


def test_the_best_batch_is_named_only_beyond_the_spreads():
    from perf_sweep import best_batch, describe_best

    def row(batch, fps, cv):
        return {"batch_size": batch, "images_per_s_per_card": fps, "spread": None if cv is None else {"cv": cv, "blocks": 5}}

    assert best_batch([row(32, 100.0, 0.02), row(64, 110.0, 0.02)])[1] is True  # 107.8 above 102
    best, separated, second = best_batch([row(32, 100.0, 0.05), row(64, 104.0, 0.05)])  # 98.8 below 105
    assert (best["batch_size"], separated, second["batch_size"]) == (64, False, 32)
    assert describe_best(best, separated, second) == "not named: 104.00 (bs64) and 100.00 (bs32) lie within their spread"
    assert best_batch([row(32, 100.0, None), row(64, 104.0, 0.01)])[1] is None
    assert best_batch([row(8, 5.0, 0.5)])[1:] == (None, None)
