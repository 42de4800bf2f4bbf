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
