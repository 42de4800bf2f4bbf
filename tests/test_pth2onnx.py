import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import ROOT, assert_clean_error, random_generator, run_script
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
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("int8 on the guide's workload")]
    assert "6,400 images" in line and "PASS int8 preset" in line and "AVX" in line, line
    for model in (int8, path):  # the thread count is measured, not guessed from the model type
        runner = Runner(model).measure_threads(np.zeros((64, 100), np.float32))
        choice = runner.choice
        if choice is None:
            assert runner.threads == 1
        else:
            assert runner.threads == (min(choice.best, key=choice.best.get) if choice.separated else max(choice.best))
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(int8), "--input", str(vectors), "--output", str(tmp_path / "out"))
    passed = run_script(
        "GAN_compare.py",
        f"--online_path={images}",
        f"--offline_path={tmp_path / 'out'}",
        "--tolerance",
        "int8",
        "--diff_image",
        "",
        "--error_plot",
        "",
    )
    assert "PASS: int8" in passed.stdout


def fp16(values):
    """Round to the nearest fp16 value, kept in fp32."""
    return np.asarray(values, np.float32).astype(np.float16).astype(np.float32)


def numpy_force_fp16(state, z):
    """An independent numpy implementation of the preview's rounding rules, from the PyTorch weights (not from the ONNX
    file): weights and input rounded to fp16; each layer computed in fp32 on fp16 values and its result rounded."""
    x = fp16(z)
    for linear, norm in ((0, None), (2, 3), (5, 6), (8, 9), (11, None)):
        x = fp16(x @ fp16(state[f"model.{linear}.weight"]).T + fp16(state[f"model.{linear}.bias"]))
        if norm is not None:
            gamma, beta, mean, var = (fp16(state[f"model.{norm}.{k}"]) for k in ("weight", "bias", "running_mean", "running_var"))
            x = fp16((x - mean) / np.sqrt(var + np.float32(np.float16(0.8))) * gamma + beta)
        x = fp16(np.tanh(x)) if linear == 11 else fp16(np.where(x >= 0, x, x * np.float32(np.float16(0.2))))
    return x.reshape(-1, 1, 28, 28)


def test_fp16_preview_against_an_independent_numpy_implementation():
    from onnx import numpy_helper

    from gan.onnx_models import ModelFile
    from GAN_layer_compare import expose_all_outputs, run_all_tensors
    from GAN_pth2onnx import emulate_fp16, export_onnx

    generator = random_generator(2)
    state = {k: v.numpy() for k, v in generator.state_dict().items()}
    preview = emulate_fp16(export_onnx(generator, 11))
    z = np.random.default_rng(2).standard_normal((256, 100), dtype=np.float32)
    exposed = expose_all_outputs(onnx.load_from_string(preview))
    tensors, graph = run_all_tensors(ModelFile(preview, None, "the preview"), z, exposed), exposed.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for name, value in state.items():
        if name in weights:
            np.testing.assert_array_equal(weights[name], fp16(value), err_msg=f"{name} is its fp16 value")
    consumers = {i: n for n in graph.node for i in n.input}
    checked = {}
    for node in graph.node:
        if node.op_type in ("Cast", "Constant", "Reshape"):
            continue
        x = fp16(z) if node.input[0] == "Z_fp16" else tensors[node.input[0]]
        rounded = consumers[consumers[node.output[0]].output[0]]  # the Cast to fp16 and back after the operator
        assert (consumers[node.output[0]].op_type, rounded.op_type) == ("Cast", "Cast"), node.name
        got = tensors[rounded.output[0]]
        one_ulp = np.spacing(np.abs(got).astype(np.float16)).astype(np.float32)
        if node.op_type == "Gemm":
            w, b = weights[node.input[1]], weights[node.input[2]]
            expected = fp16(x @ w.T + b)
            # Two fp32 summation orders of n terms differ by at most 2 gamma_n sum|x_i w_i| (gamma_n = n u / (1 - n u),
            # u = 2^-24, Higham's bound); rounding to fp16 afterwards adds at most one fp16 ulp.
            n, u = x.shape[1], 2.0**-24
            bound = 2 * n * u / (1 - n * u) * (np.abs(x) @ np.abs(w).T + np.abs(b)) + one_ulp
            assert (np.abs(got - expected) <= bound).all(), node.name
            assert (got == expected).mean() >= 0.99, node.name
        elif node.op_type == "BatchNormalization":
            gamma, beta, mean, var = (weights[i] for i in node.input[1:])
            expected = fp16((x - mean) / np.sqrt(var + np.float32(np.float16(0.8))) * gamma + beta)
            # ONNX Runtime may fold the four parameters into a scale and a shift: a few fp32 ulps, at most one fp16 ulp
            assert (np.abs(got - expected) <= one_ulp).all() and (got == expected).mean() >= 0.999, node.name
        elif node.op_type == "LeakyRelu":
            np.testing.assert_array_equal(got, fp16(np.where(x >= 0, x, x * np.float32(np.float16(0.2)))), err_msg=node.name)
        else:
            assert node.op_type == "Tanh"
            np.testing.assert_array_equal(got, fp16(np.tanh(x)), err_msg=node.name)
        checked[node.op_type] = checked.get(node.op_type, 0) + 1
    assert checked == {"Gemm": 5, "BatchNormalization": 3, "LeakyRelu": 4, "Tanh": 1}
    # end to end, from the PyTorch weights alone: only the summation order differs
    final = tensors["generateimg"]
    reference = numpy_force_fp16(state, z)
    with torch.no_grad():
        plain = generator(torch.from_numpy(z)).numpy()
    assert (final == fp16(final)).all(), "every output value is an fp16 value"
    assert (final == reference).mean() >= 0.97
    assert np.abs(final - reference).mean() < np.abs(final - plain).mean() / 20, "far closer to fp16 than to fp32 arithmetic"


def test_fp16_preview_is_written_and_judged_by_the_fp16_preset(checkpoint, testdata, tmp_path):
    path = tmp_path / "GAN.onnx"
    result = run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={path}", "--emulate_fp16")
    preview = tmp_path / "GAN_fp16emu.onnx"
    assert preview.is_file() and "fp16 preview on the guide's workload" in result.stdout and "PASS fp16 preset" in result.stdout
    session = ort.InferenceSession(str(preview), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("Z", "tensor(float)", "generateimg", "tensor(float)")
    images, vectors = testdata
    run_script("run_msame.sh", "--model", str(preview), "--input", str(vectors), "--output", str(tmp_path / "out"), "--outfmt", "TXT")
    args = [f"--online_path={images}", f"--offline_path={tmp_path / 'out'}", "--diff_image", "", "--error_plot", ""]
    assert "PASS: fp16" in run_script("GAN_compare.py", *args, "--tolerance", "fp16").stdout
    assert run_script("GAN_compare.py", *args, "--tolerance", "fp32", check=False).returncode == 1, "fp32 rightly fails"


BUNDLED = ROOT / "weights" / "generator_mnist.pth"


def test_default_int8_export_passes_the_int8_preset_over_the_guide_s_workload_on_this_cpu(tmp_path):
    """The bundled generator's int8 model, made by the default export, checked independently of the export's own check:
    every one of the guide's 6,400 images, through the runner's session, against PyTorch, with GAN_compare's rule."""
    import json

    import torch

    from gan.files import latent_batch
    from gan.onnx_models import onnx_session
    from gan.perf import describe_cpu
    from GAN_compare import TOLERANCES, judge
    from models import load_generator

    run_script(
        "GAN_pth2onnx.py",
        f"--input_file={BUNDLED}",
        f"--output_file={tmp_path / 'GAN.onnx'}",
        "--quantize",
        "int8",
        "--save_json",
        str(tmp_path / "export.json"),
    )
    int8 = tmp_path / "GAN_int8.onnx"
    session, generator = onnx_session(int8), load_generator(BUNDLED)
    z = np.concatenate([latent_batch(0, i, 64) for i in range(100)])
    got = np.concatenate([session.run(None, {"Z": z[k : k + 64]})[0] for k in range(0, 6400, 64)]).astype(np.float64).ravel()
    with torch.inference_mode():
        expected = generator(torch.from_numpy(z)).numpy().astype(np.float64).ravel()
    diff = np.abs(got - expected)
    cosine = float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected))
    print(f"{describe_cpu()}: int8 over 6,400 images: max abs {diff.max():.3f}, mean abs {diff.mean():.2e}, cosine {cosine:.6f}")
    assert judge(float(diff.max()), float(diff.mean()), cosine, TOLERANCES["int8"])
    check = json.loads((tmp_path / "export.json").read_text())["models"][str(int8)]["check"]
    assert check["verdict"] == "PASS" and check["max_abs"] == pytest.approx(diff.max(), rel=1e-6), "the export saw what the pipeline sees"
    # The same answer on every CPU: AVX2 without VNNI adds pairs of u8 x s8 products in 16 bits, so 255 x (|w1| + |w2|)
    # must stay <= 32,767 for every pair of weights, which 7-bit weights (reduce_range) guarantee: a property of the file.
    from onnx import numpy_helper

    model = onnx.load(str(int8))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(weights) == 5
    for w in weights:  # (in, out): the kernel pairs consecutive inputs k, k+1 of one output column
        w = np.abs(w.astype(np.int32))
        pairs = w[0 : w.shape[0] // 2 * 2 : 2] + w[1 : w.shape[0] // 2 * 2 : 2]
        assert 255 * int(pairs.max()) <= 32767 and int(w.max()) <= 64


def test_an_int8_model_that_fails_its_preset_is_not_written(checkpoint, tmp_path):
    """One hidden unit with a huge activation (fp32 output unchanged: its outgoing weights are 0) makes the per-batch
    activation scale coarse: the int8 model fails the preset, and nothing is written, the previous files kept."""
    import torch

    state = {k.removeprefix("module."): v.clone() for k, v in torch.load(checkpoint).items()}
    state["model.9.bias"][0] = 5000.0  # BatchNorm shift of unit 0 of the last hidden layer
    state["model.11.weight"][:, 0] = 0.0
    bad = tmp_path / "outlier.pth"
    torch.save(state, bad)
    output = tmp_path / "GAN.onnx"
    run_script("GAN_pth2onnx.py", f"--input_file={checkpoint}", f"--output_file={output}", "--quantize", "int8")
    before = {p.name: p.read_bytes() for p in tmp_path.glob("GAN*.onnx")}
    result = run_script("GAN_pth2onnx.py", f"--input_file={bad}", f"--output_file={output}", "--quantize", "int8", check=False)
    assert result.returncode == 1
    line = assert_clean_error(result, tmp_path / "GAN_int8.onnx", "fails GAN_compare's int8 preset on the guide's workload on this CPU")
    assert "the existing files are unchanged" in line
    assert {p.name: p.read_bytes() for p in tmp_path.glob("GAN*.onnx")} == before, "neither model replaced"


def test_a_library_warning_is_no_second_voice_beside_the_error(tmp_path):
    """An fp16 preview of weights beyond fp16's range: numpy warns of an overflow in the cast; the step's one line alone."""
    generator = random_generator()
    with torch.no_grad():  # BatchNorm scaled past 65504, the next Linear scaled back: fine in fp32, Inf in fp16
        generator.model[3].weight.mul_(1e5)
        generator.model[3].bias.mul_(1e5)
        generator.model[5].weight.mul_(1e-5)
    torch.save(generator.state_dict(), tmp_path / "huge.pth")
    result = run_script(
        "GAN_pth2onnx.py", f"--input_file={tmp_path / 'huge.pth'}", f"--output_file={tmp_path / 'GAN.onnx'}", "--emulate_fp16",
        "--max_diff", "1", check=False,
    )  # fmt: skip
    assert result.returncode == 1 and assert_clean_error(result, "huge.pth", "fp16 preview", "non-finite")
    assert "Warning" not in result.stderr and not (tmp_path / "GAN.onnx").exists()


def test_a_warning_on_success_is_said_once_in_the_projects_words(tmp_path):
    script = (
        "import sys, warnings; sys.path.insert(0, sys.argv[1]); import gan.cli, argparse\n"
        "def main(args):\n"
        "    for _ in range(3): warnings.warn('the thing may be slow')\n"
        "    warnings.warn('old API', DeprecationWarning)\n"
        "    return 0\n"
        "sys.exit(gan.cli.run_main(main, argparse.ArgumentParser(prog='step.py'), []))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["step.py: warning: the thing may be slow (UserWarning)"]
