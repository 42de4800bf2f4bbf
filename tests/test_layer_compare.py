"""GAN_layer_compare.py: one row per ONNX operator that has a PyTorch counterpart, and a planted error found where it is."""

import csv

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import assert_clean_error, latent, random_generator, run_script
from GAN_layer_compare import compare, layer_table
from GAN_pth2onnx import emulate_fp16, export_onnx, quantize_int8

UNFOLDED = [
    ("model.0 Linear", "Gemm"),
    ("model.1 LeakyReLU", "LeakyRelu"),
    ("model.2 Linear", "Gemm"),
    ("model.3 BatchNorm1d", "BatchNormalization"),
    ("model.4 LeakyReLU", "LeakyRelu"),
    ("model.5 Linear", "Gemm"),
    ("model.6 BatchNorm1d", "BatchNormalization"),
    ("model.7 LeakyReLU", "LeakyRelu"),
    ("model.8 Linear", "Gemm"),
    ("model.9 BatchNorm1d", "BatchNormalization"),
    ("model.10 LeakyReLU", "LeakyRelu"),
    ("model.11 Linear", "Gemm"),
    ("model.12 Tanh", "Tanh"),
]
FOLDED = [
    ("model.0 Linear", "Gemm"),
    ("model.1 LeakyReLU", "LeakyRelu"),
    ("model.2+3 Linear+BatchNorm1d", "Gemm"),
    ("model.4 LeakyReLU", "LeakyRelu"),
    ("model.5+6 Linear+BatchNorm1d", "Gemm"),
    ("model.7 LeakyReLU", "LeakyRelu"),
    ("model.8+9 Linear+BatchNorm1d", "Gemm"),
    ("model.10 LeakyReLU", "LeakyRelu"),
    ("model.11 Linear", "Gemm"),
    ("model.12 Tanh", "Tanh"),
]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A seeded random generator, its checkpoint, and a batch of 32 latents."""
    folder = tmp_path_factory.mktemp("layers")
    generator = random_generator(4)
    pth = folder / "g.pth"
    torch.save(generator.state_dict(), pth)
    return generator, pth, latent(32, seed=4)


def table(pth, model_bytes, batch):
    return [(row["layer"], row["op_type"]) for row in layer_table(pth, model_bytes, batch)]


def test_one_row_per_operator_with_a_pytorch_counterpart(small):
    generator, pth, batch = small
    rows = layer_table(pth, export_onnx(generator, 11), batch)
    assert [(r["layer"], r["op_type"]) for r in rows] == UNFOLDED
    assert all(not r["over_threshold"] and r["cosine"] > 0.9999999 and r["max_abs"] < 1e-4 for r in rows)
    assert rows[3]["shape"] == "32x256" and rows[-1]["shape"] == "32x784"
    assert table(pth, export_onnx(generator, 11, fold=True), batch) == FOLDED
    assert table(pth, emulate_fp16(export_onnx(generator, 11)), batch) == UNFOLDED, "the preview's casts are looked through"
    int8 = table(pth, quantize_int8(generator, 11), batch)
    assert int8 == [(layer, "Add" if op == "Gemm" else op) for layer, op in FOLDED], "the bias Add ends each quantized Linear"


@pytest.mark.parametrize(
    "fold,weight_shape,layer", [(False, [512, 256], "model.5 Linear"), (True, [512, 256], "model.5+6 Linear+BatchNorm1d")]
)
def test_a_planted_error_is_reported_at_exactly_its_layer(small, fold, weight_shape, layer):
    generator, pth, batch = small
    model = onnx.load_from_string(export_onnx(generator, 11, fold=fold))
    weight = next(t for t in model.graph.initializer if list(t.dims) == weight_shape)
    values = numpy_helper.to_array(weight).copy()
    values[7, :] *= 40.0  # one output unit of that Linear, badly wrong
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    rows = layer_table(pth, model.SerializeToString(), batch)
    first = next(r for r in rows if r["over_threshold"])
    assert first["layer"] == layer
    before = rows[: rows.index(first)]
    assert before and all(r["max_abs"] < 1e-4 for r in before), "nothing before it moved"


def test_metrics_follow_the_operator_compare_definitions():
    reference = np.array([1.0, -2.0, 0.0, 4.0])
    ours = np.array([1.1, -2.0, 0.5, 3.0])
    m = compare(ours, reference)
    assert m["max_abs"] == pytest.approx(1.0) and m["mean_abs"] == pytest.approx(1.6 / 4)
    assert m["max_rel"] == pytest.approx(0.25) and m["mean_rel"] == pytest.approx((0.1 + 0 + 0 + 0.25) / 4), "0 where y is 0"
    assert m["red"] == pytest.approx(np.linalg.norm(ours - reference) / np.linalg.norm(reference))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((ours - reference) ** 2)))
    assert m["cosine"] == pytest.approx(ours @ reference / (np.linalg.norm(ours) * np.linalg.norm(reference)))
    assert compare(reference, reference)["kld"] == pytest.approx(0.0, abs=1e-12) and m["kld"] > 0


def test_cli_table_csv_and_errors(small, onnx_model, checkpoint, tmp_path):
    batch = tmp_path / "0.bin"
    latent(8).tofile(batch)
    out = tmp_path / "layers.csv"
    result = run_script(
        "GAN_layer_compare.py", "--pth", str(checkpoint), "--onnx", str(onnx_model), "--input", str(batch), "--csv", str(out)
    )
    assert "first layer over a threshold: none" in result.stdout and "model.11 Linear" in result.stdout
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["layer"] for r in rows] == [layer for layer, _ in UNFOLDED]
    assert {
        "CosineSimilarity",
        "RelativeEuclideanDistance",
        "KullbackLeiblerDivergence",
        "RootMeanSquareError",
        "MeanRelativeError",
        "MaxRelativeError",
    } <= set(rows[0])
    other = tmp_path / "linear.onnx"
    torch.onnx.export(
        torch.nn.Linear(100, 784),
        torch.zeros(1, 100),
        str(other),
        input_names=["Z"],
        dynamic_axes={"Z": {0: "b"}},
        opset_version=11,
        dynamo=False,
    )
    assert_clean_error(
        run_script("GAN_layer_compare.py", "--pth", str(checkpoint), "--onnx", str(other), "--input", str(batch), check=False),
        "0 activations",
        "not a model of this generator",
    )

    assert_clean_error(
        run_script(
            "GAN_layer_compare.py",
            "--pth",
            str(checkpoint),
            "--onnx",
            str(onnx_model),
            "--input",
            str(batch),
            "--csv",
            str(batch),
            check=False,
        ),
        "same path as --input",
    )


class TwoInputs(torch.nn.Module):
    def forward(self, z, extra):
        return torch.tanh(z @ torch.ones(100, 784) + extra)


class Int64Input(torch.nn.Module):
    def forward(self, z):
        return torch.tanh(z.float() @ torch.ones(100, 784))


@pytest.mark.parametrize(
    "module, example, reason",
    [
        (TwoInputs(), (torch.zeros(2, 100), torch.zeros(2, 784)), "expected one input of shape (batch, features), found 2"),
        (Int64Input(), (torch.zeros(2, 100, dtype=torch.int64),), "expected one float32 input of shape (batch, features)"),
        (torch.nn.Linear(64, 784), (torch.zeros(2, 64),), "takes 64 values per row, expected 100"),
    ],
)
def test_a_model_s_inputs_are_checked_before_it_runs(checkpoint, testdata, tmp_path, module, example, reason):
    """One shared check (gan.onnx_models.model_signature) before anything runs, in the layer compare as in the runner."""
    _, vectors = testdata
    model = tmp_path / "other.onnx"
    torch.onnx.export(module, example, str(model), opset_version=11, dynamo=False)
    compare = run_script(
        "GAN_layer_compare.py", "--pth", str(checkpoint), "--onnx", str(model), "--input", str(vectors / "0.bin"), check=False
    )
    assert compare.returncode == 1 and assert_clean_error(compare, model, reason)
    runner = run_script("run_msame.sh", "--model", str(model), "--input", str(vectors), "--output", str(tmp_path / "out"), check=False)
    if "64 values" in reason:  # the runner runs any (batch, features) model: it refuses the inputs' size instead
        assert_clean_error(runner, vectors / "0.bin", "not a whole number of rows of 64 float32")
    else:
        assert_clean_error(runner, model, reason)
    assert not (tmp_path / "out").exists(), "refused before a run folder was made"


# ---------------------------------------------------------------------------------------------------------
# A model that fp16 breaks at a known layer: located by its own error, by fp16's range, and by the advice.


def planted_generator():
    """The small generator with model.2 Linear scaled x1000 and model.3 BatchNorm1d undoing it: the same fp32 function,
    but the BatchNorm's running variance (1e6 (v + 0.8) - 0.8, about 1.3e6..2.8e6) is beyond fp16's 65504 (Inf)."""
    generator = random_generator(4)
    with torch.no_grad():
        linear, norm = generator.model[2], generator.model[3]
        linear.weight *= 1000
        linear.bias *= 1000
        norm.running_mean *= 1000
        norm.running_var.copy_(1e6 * (norm.running_var + 0.8) - 0.8)
    return generator


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    generator, same = planted_generator(), random_generator(4)
    z = torch.from_numpy(latent(64, seed=1))
    with torch.no_grad():
        assert torch.allclose(generator(z), same(z), atol=1e-5), "the plant keeps the fp32 function"
    torch.save(generator.state_dict(), folder / "planted.pth")
    (folder / "planted.onnx").write_bytes(export_onnx(generator, 11))
    return folder


def test_the_planted_layer_is_located_by_its_own_error_and_fp16_range(planted):
    rows = layer_table(planted / "planted.pth", emulate_fp16((planted / "planted.onnx").read_bytes()), latent(32, seed=4))
    by_layer = {row["layer"]: row for row in rows}
    first = next(row for row in rows if row["over_threshold"])
    assert first["layer"] == "model.3 BatchNorm1d" and "cosine" in first["own_over_threshold"], "its own error breaks"
    assert by_layer["model.3 BatchNorm1d"]["param_fp16_overflow"] == 256, "all 256 running variances overflow fp16"
    assert sum(row["param_fp16_overflow"] + row["fp16_overflow"] for row in rows) == 256, "and nothing else overflows"
    after = by_layer["model.4 LeakyReLU"]
    assert after["over_threshold"] and not after["own_over_threshold"], "the next layer only carries the error"
    assert after["own"]["max_abs"] < 1e-2 < after["max_abs"]
    assert all(not row["over_threshold"] and not row["own_over_threshold"] for row in rows[:3]), "nothing before it"


def test_the_advice_names_the_planted_layer_and_only_it(planted, tmp_path):
    keep = tmp_path / "keep_dtype.cfg"
    result = run_script(
        "GAN_layer_compare.py", "--pth", str(planted / "planted.pth"), "--onnx", str(planted / "planted.onnx"), "--advise", "fp16",
        "--keep_dtype", str(keep),
    )  # fmt: skip
    assert keep.read_text() == "/model/model.3/BatchNormalization\n"
    assert "keep in fp32 (the smallest set; 15 sets of the 13 operators tried)" in result.stdout
    assert f"bash atc_convert.sh --onnx {planted / 'planted.onnx'} --keep_dtype {keep}" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("PASS: with them kept"))
    max_abs = float(line.split("max abs ")[1].split(",")[0])
    assert max_abs <= 0.05, "the preview rebuilt with the BatchNorm kept in fp32 passes the fp16 preset over 6,400 images"
    from gan.precision import emulate_fp16 as preview

    with pytest.raises(ValueError, match="no node named"):
        preview((planted / "planted.onnx").read_bytes(), keep=["model.3"])


def test_the_advice_when_nothing_is_needed_when_nothing_passes_and_on_a_variant(small, planted, tmp_path):
    generator, pth, _ = small
    model = tmp_path / "GAN.onnx"
    model.write_bytes(export_onnx(generator, 11))
    keep = tmp_path / "keep_dtype.cfg"
    passed = run_script("GAN_layer_compare.py", "--pth", str(pth), "--onnx", str(model), "--advise", "fp16", "--keep_dtype", str(keep))
    assert "with no operator kept: no --keep_dtype needed; nothing written" in passed.stdout and not keep.exists()
    preview = tmp_path / "GAN_fp16emu.onnx"
    preview.write_bytes(emulate_fp16(model.read_bytes()))
    refused = run_script("GAN_layer_compare.py", "--pth", str(pth), "--onnx", str(preview), "--advise", "fp16", check=False)
    assert refused.returncode == 1 and assert_clean_error(refused, preview, "holds casts to float16", "not the fp32 export")
    # the planted model against a checkpoint of another function: not even fp32 throughout passes
    torch.save(random_generator(7).state_dict(), tmp_path / "other.pth")
    other = run_script(
        "GAN_layer_compare.py", "--pth", str(tmp_path / "other.pth"), "--onnx", str(planted / "planted.onnx"), "--advise", "int8", "--keep_dtype",
        str(keep), check=False,
    )  # fmt: skip
    assert other.returncode == 1 and assert_clean_error(other, "no set of operators kept in fp32 passes the int8 preset")
    assert not keep.exists()
    missing = run_script("GAN_layer_compare.py", "--pth", str(pth), "--onnx", str(model), check=False)
    assert missing.returncode == 1 and assert_clean_error(missing, "--input", "unless --advise")


def test_smallest_keep_set_search():
    from gan.precision import smallest_keep_set

    names = [f"n{i}" for i in range(6)]

    def needs(*required):
        return lambda keep: (set(required) <= set(keep), {"max_abs": float(len(set(required) - set(keep))) + 0.01 * len(keep)})

    assert smallest_keep_set(names, needs())[0] == [] and smallest_keep_set(names, needs())[3] == 1
    kept, _, _, tried, proven = smallest_keep_set(names, needs("n4"))
    assert (kept, tried, proven) == (["n4"], 8, True), "nothing kept, all kept, then the six singletons"
    kept, _, _, tried, proven = smallest_keep_set(names, needs("n1", "n5"))
    assert (kept, proven) == (["n1", "n5"], True) and tried == 2 + 6 + 15
    kept, _, _, _, proven = smallest_keep_set(names, needs("n0", "n2", "n3"))
    assert (kept, proven) == (["n0", "n2", "n3"], True), "size 3 after every 1 and 2 failed: proven"
    kept, _, _, _, proven = smallest_keep_set(names, needs("n0", "n1", "n2", "n3"))
    assert (kept, proven) == (["n0", "n1", "n2", "n3"], False)
    nothing = smallest_keep_set(names, lambda keep: (False, {"max_abs": 1.0}))
    assert nothing[0] is None and nothing[3] == 2, "all kept fails: no subset is tried"
