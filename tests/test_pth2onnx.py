import numpy as np
import onnx
import onnxruntime as ort
import torch

from conftest import random_generator, run_script
from GAN_pth2onnx import ExportGenerator, compare_with_pytorch


def test_export_names_shapes_opset_and_graph(onnx_model):
    model = onnx.load(str(onnx_model))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 11
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "Z" and out.name == "generateimg"
    in_dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1] == 100, "dynamic batch, 100 features"
    assert isinstance(out_dims[0], str) and out_dims[1:] == [1, 28, 28]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Gemm") == 5 and ops.count("BatchNormalization") == 3, "the layers as they are, by default"
    assert ops.count("Reshape") == 1 and "Shape" not in ops and "Concat" not in ops, "a constant-shape reshape"


def test_onnx_matches_pytorch_at_1_16_64(checkpoint, onnx_model):
    from models import load_generator

    results = compare_with_pytorch(load_generator(checkpoint), onnx_model)
    assert sorted(results) == [1, 16, 64]
    for batch, (diff, cosine) in results.items():
        assert diff <= 1e-5, (batch, diff)
        assert cosine > 0.9999999


def test_folding_is_the_same_function():
    generator = random_generator(5)
    z = torch.randn(64, 100)
    with torch.no_grad():
        assert torch.allclose(ExportGenerator(generator, fold=True)(z), generator(z), atol=2e-6)
        assert torch.equal(ExportGenerator(generator)(z), generator(z))


def test_folded_export_and_other_opset(checkpoint, tmp_path):
    path = tmp_path / "folded.onnx"
    result = run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={path}", "--fold", "--opset", "13")
    assert "batch  64: max |onnxruntime - pytorch|" in result.stdout
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 13
    assert [n.op_type for n in model.graph.node] == ["Gemm", "LeakyRelu"] * 4 + ["Gemm", "Tanh", "Constant", "Reshape"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"Z": np.zeros((3, 100), np.float32)})[0].shape == (3, 1, 28, 28)


def test_export_prints_the_difference_per_batch(checkpoint, tmp_path):
    result = run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={tmp_path / 'g.onnx'}")
    diffs = [float(line.split("=")[1]) for line in result.stdout.splitlines() if "max |onnxruntime - pytorch|" in line]
    assert len(diffs) == 3 and max(diffs) < 1e-5


def test_int8_model_is_a_second_file_close_to_pytorch(checkpoint, testdata, tmp_path):
    from msame_onnxruntime import Runner

    path = tmp_path / "GAN.onnx"
    result = run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={path}", "--quantize", "int8")
    int8 = tmp_path / "GAN_int8.onnx"
    assert path.is_file() and int8.is_file() and int8.stat().st_size < path.stat().st_size / 3
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    cosines = [float(line.rsplit("cosine ", 1)[1]) for line in result.stdout.splitlines() if line.startswith("int8 batch")]
    assert len(cosines) == 3 and min(cosines) >= 0.999
    for model in (int8, path):  # the thread count is measured, not guessed from the model type
        runner = Runner(model, 0, probe=np.zeros((64, 100), np.float32))
        assert runner.threads == min(runner.thread_probe, key=runner.thread_probe.get) if runner.thread_probe else runner.threads == 1
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(int8), "--input", str(vectors), "--output", str(tmp_path / "out"))
    passed = run_script("GAN_compare.py", f"--online_path={images}", f"--offline_path={tmp_path / 'out'}", "--tolerance", "int8",
                        "--diff_image", "")
    assert "PASS: int8" in passed.stdout
