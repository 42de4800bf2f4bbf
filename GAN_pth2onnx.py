"""Export the generator to ONNX (input `Z` (batch, 100), output `generateimg` (batch, 1, 28, 28), dynamic batch).

    python GAN_pth2onnx.py --input_file=weights/generator_mnist.pth --output_file=GAN.onnx

Opset 11 by default: atc of CANN 5.x accepts opset 9 to 13. The final reshape gets a constant target shape
(one Reshape instead of Shape/Gather/Concat/Reshape). The layers are exported as they are, which keeps
ONNX Runtime within 5e-6 of PyTorch; --fold folds each BatchNorm1d into the Linear before it (a plain
Gemm/LeakyRelu graph, about 3% faster here at batch 64, but up to 1.7e-5 from PyTorch's own fp32 result,
which is itself 1.2e-5 from the fp64 one). The exported model is checked with onnx.checker and then run
on ONNX Runtime against PyTorch at batch 1, 16 and 64: a difference above --max_diff, or any non-finite
one, fails the export. The model is exported and checked in memory and written only when every check
passed, so a failed export leaves an existing file as it was. --quantize int8 also writes an int8 model
(dynamic quantization of the folded graph: 7-bit weights per channel, which no x86 CPU saturates, so AVX2,
AVX-512 VNNI and AMX machines compute the same integers). Each variant (int8, fp16 preview) is checked as the
pipeline will check it: over the guide's workload (100 x 64 images, GAN_testdata.py's seed 0) against PyTorch,
with GAN_compare.py's preset for its kind; if one fails on this CPU, no file is written.

--emulate_fp16 also writes <stem>_fp16emu.onnx: a preview of what atc's default --precision_mode
force_fp16 does to the arithmetic, that runs anywhere on ONNX Runtime. It is the exported graph with
every weight rounded to fp16, the input rounded to fp16, and every operator's result rounded to fp16
(a Cast to float16 and back after it): Gemm multiplies fp16 values and accumulates in fp32, as the cube
unit does (fp16 x fp16 -> fp32), adds the fp16 bias and rounds once; BatchNorm, LeakyReLU (alpha as the
fp16 value of 0.2) and Tanh take fp16 values and fp16 parameters and round their result. Same input and
output names and dtypes as the fp32 model. An emulation of documented rounding, not a bit-exact
simulation of an Ascend chip: the order of the fp32 accumulation, how atc fuses BatchNorm, and the
vector unit's own fp16 functions are not documented.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import io
import logging
import tempfile
import warnings
from pathlib import Path

from gan.cli import HelpFormatter, InputError, check_output_file, non_negative_float, refuse_overlap, require_modules, run_main


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--input_file", required=True, help="generator checkpoint (.pth)")
    parser.add_argument("--output_file", default="GAN.onnx", help="ONNX model to write")
    parser.add_argument("--opset", type=int, default=11, help="ONNX opset (atc of CANN 5.x/6.x accepts 9..13)")
    parser.add_argument("--fold", action="store_true", help="fold each BatchNorm1d into the Linear before it")
    parser.add_argument("--max_diff", type=non_negative_float, default=1e-4, help="largest ONNX Runtime vs PyTorch difference accepted")
    parser.add_argument(
        "--quantize",
        choices=["none", "int8"],
        default="none",
        help="int8: also write an ONNX Runtime dynamically quantized model (CPU only, not for atc)",
    )
    parser.add_argument("--int8_file", default=None, help="int8 model to write (default: <output_file stem>_int8.onnx)")
    parser.add_argument(
        "--emulate_fp16",
        action="store_true",
        help="also write an fp16 preview of atc's force_fp16 that runs on ONNX Runtime (<output_file stem>_fp16emu.onnx)",
    )
    parser.add_argument("--fp16_file", default=None, help="fp16 preview to write (default: <output_file stem>_fp16emu.onnx)")
    parser.add_argument("--save_json", default=None, help="also save the checks' figures as JSON here (GAN_report.py reads it)")
    return parser


require_modules(__name__, get_args_parser, "torch", "onnx")  # before the imports that need them: --help works without

import numpy as np
import torch
import torch.nn as nn

from gan.files import IMG_SHAPE, LATENT_DIM, latent_batch, write_bytes_atomic
from gan.onnx_models import onnx_session
from gan.perf import describe_cpu, versions
from gan.precision import emulate_fp16
from gan.records import save_step
from models import load_generator

CHECK_BATCHES = (1, 16, 64)


class ExportGenerator(nn.Module):
    """An eval-mode Generator as exported: a constant-shape reshape, and with fold=True each BatchNorm1d
    folded into the preceding Linear (computed in float64, rounded once)."""

    def __init__(self, generator, fold=False):
        super().__init__()
        layers, pending = [], None
        for layer in generator.model:
            if fold and isinstance(layer, nn.BatchNorm1d):
                scale = layer.weight.double() / torch.sqrt(layer.running_var.double() + layer.eps)
                fused = nn.Linear(pending.in_features, pending.out_features)
                fused.weight.data = (pending.weight.double() * scale[:, None]).float()
                fused.bias.data = ((pending.bias.double() - layer.running_mean.double()) * scale + layer.bias.double()).float()
                layers[-1] = fused
            else:
                layers.append(layer)
            pending = layer if isinstance(layer, nn.Linear) else None
        self.model = nn.Sequential(*layers)

    def forward(self, z):
        return self.model(z).reshape(-1, *IMG_SHAPE)


def export_onnx(generator, opset, fold=False):
    """The ONNX model as bytes (exported in memory: the exporter takes no path that is not valid UTF-8)."""
    import onnx

    module = ExportGenerator(generator, fold).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # opset 11 needs the TorchScript exporter
        torch.onnx.export(
            module,
            torch.randn(16, LATENT_DIM),
            buffer,
            input_names=["Z"],
            output_names=["generateimg"],
            dynamic_axes={"Z": {0: "batch"}, "generateimg": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    # The exporter leaves the output's (1, 28, 28) symbolic after a Reshape; write the known sizes in.
    for dim, size in zip(model.graph.output[0].type.tensor_type.shape.dim[1:], IMG_SHAPE):
        dim.Clear()
        dim.dim_value = size
    return model.SerializeToString()


def compare_with_pytorch(generator, model, batches=CHECK_BATCHES, seed=0):
    """{batch: (max abs difference, cosine similarity)} of ONNX Runtime (a model path or bytes) against PyTorch."""
    session = onnx_session(model)
    rng = np.random.default_rng(seed)
    results = {}
    for batch in batches:
        z = rng.standard_normal((batch, LATENT_DIM), dtype=np.float32)
        with torch.inference_mode():
            expected = generator(torch.from_numpy(z)).numpy().astype(np.float64)
        got = session.run(["generateimg"], {"Z": z})[0].astype(np.float64)
        cosine = float((expected * got).sum() / (np.linalg.norm(expected) * np.linalg.norm(got)))
        results[batch] = (float(np.abs(expected - got).max()), cosine)
    return results


def worst_difference(results, source, label):
    """The largest difference of compare_with_pytorch's results; a NaN or Inf anywhere fails (max() would drop it)."""
    not_finite = [b for b, (diff, cosine) in results.items() if not (np.isfinite(diff) and np.isfinite(cosine))]
    if not_finite:
        raise InputError(
            f"{source}: {label} outputs hold non-finite values (NaN or Inf) at batch {', '.join(map(str, not_finite))}: nothing written"
        )
    return max(diff for diff, _ in results.values())


def quantize_int8(generator, opset):
    """ONNX Runtime dynamic quantization of the folded graph, as bytes: int8 weights per output channel in 7 bits
    (reduce_range: -64..63), activations quantized per batch to uint8 at run time. Folding first leaves one quantized
    MatMul per layer and no float BatchNorm.

    Why 7-bit weights: on x86 CPUs without VNNI (AVX2 only), ONNX Runtime's u8 x s8 kernel adds pairs of products
    in 16 bits (vpmaddubsw), which saturates when two products exceed 32,767 (255 x 127 x 2 = 64,770 can); VNNI and
    AMX sum in 32 bits. With 8-bit weights the same model gave max abs 0.68 on AVX-512/AMX and 1.77 on AVX2 over the
    guide's 6,400 images. 7-bit weights bound every pair at 255 x 64 x 2 = 32,640, so no CPU saturates and every kind
    computes the same integers (measured: outputs bit-identical on AMX and on an emulated AVX2 CPU), at the kernel's
    full speed (ONNX Runtime's quantization guide recommends reduce_range on CPUs without VNNI for this reason)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process applies to static quantization
    with tempfile.TemporaryDirectory() as folder:
        folded, quantized = Path(folder) / "folded.onnx", Path(folder) / "int8.onnx"
        folded.write_bytes(export_onnx(generator, opset, fold=True))
        quantize_dynamic(str(folded), str(quantized), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
        return quantized.read_bytes()


# The check of a variant sees what the pipeline sees: the guide's workload, 100 batches of 64 latent vectors of
# GAN_testdata.py's default seed, compared with PyTorch by GAN_compare.py's preset for that kind of model.
WORKLOAD_BATCHES, WORKLOAD_BATCH_SIZE, WORKLOAD_SEED = 100, 64, 0


def check_on_workload(generator, variant_bytes, preset):
    """{images, max_abs, mean_abs, cosine, preset, verdict, cpu} of a variant against PyTorch over the guide's workload."""
    from GAN_compare import TOLERANCES, Agreement, judge

    session, agreement = onnx_session(variant_bytes), Agreement()
    for i in range(WORKLOAD_BATCHES):
        z = latent_batch(WORKLOAD_SEED, i, WORKLOAD_BATCH_SIZE)
        with torch.inference_mode():
            expected = generator(torch.from_numpy(z)).numpy().astype(np.float64).ravel()
        agreement.add(expected, session.run(["generateimg"], {"Z": z})[0].astype(np.float64).ravel())
    figures = {"images": WORKLOAD_BATCHES * WORKLOAD_BATCH_SIZE, **agreement.overall()}
    passed = judge(figures["max_abs"], figures["mean_abs"], figures["cosine"], TOLERANCES[preset]) and all(
        map(np.isfinite, figures.values())
    )
    return dict(figures, preset=preset, verdict="PASS" if passed else "FAIL", cpu=describe_cpu())


def check_variant(generator, variant_bytes, path, kind, preset, source):
    """Check a variant as the pipeline will (the guide's workload, GAN_compare's preset `preset`); refuse, in one line,
    a non-finite one or one that fails the preset on this CPU. Its figures for --save_json."""
    from GAN_compare import TOLERANCES, describe_limits

    results = compare_with_pytorch(generator, variant_bytes)
    worst_difference(results, source, f"the {kind}'s")
    check = check_on_workload(generator, variant_bytes, preset)
    print(
        f"{kind} on the guide's workload ({WORKLOAD_BATCHES} x {WORKLOAD_BATCH_SIZE} = {check['images']:,} images, seed {WORKLOAD_SEED}) "
        f"against PyTorch: max abs {check['max_abs']:.3e}, mean abs {check['mean_abs']:.3e}, cosine {check['cosine']:.7f}: "
        f"{check['verdict']} {preset} preset ({describe_limits(TOLERANCES[preset])}) on {check['cpu']}"
    )
    if check["verdict"] != "PASS":
        raise InputError(
            f"{path}: the {kind} fails GAN_compare's {preset} preset on the guide's workload on this CPU (max abs {check['max_abs']:.3g}, "
            f"mean abs {check['mean_abs']:.3g}, cosine {check['cosine']:.6f}): nothing written"
            + (" (the existing files are unchanged)" if Path(path).exists() else "")
        )
    return {"kind": kind, "max_abs_by_batch": {b: d for b, (d, _) in results.items()}, "check": check}


def main(args):
    import onnx

    if not 7 <= args.opset <= 20:
        raise InputError(f"--opset {args.opset}: expected 7..20 (atc of CANN 5.x/6.x accepts 9..13)")
    output = check_output_file(args.output_file, "--output_file")
    int8_path = fp16_path = None
    if args.quantize == "int8":
        int8_path = check_output_file(args.int8_file or output.with_name(output.stem + "_int8.onnx"), "--int8_file")
    if args.emulate_fp16:
        fp16_path = check_output_file(args.fp16_file or output.with_name(output.stem + "_fp16emu.onnx"), "--fp16_file")
    if args.save_json:
        check_output_file(args.save_json, "--save_json")
    refuse_overlap(
        [("--input_file", args.input_file)],
        [("--output_file", output), ("--int8_file", int8_path), ("--fp16_file", fp16_path), ("--save_json", args.save_json)],
    )
    checks = {}
    generator = load_generator(args.input_file)

    model_bytes = export_onnx(generator, args.opset, fold=args.fold)
    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)
    results = compare_with_pytorch(generator, model_bytes)
    for batch, (diff, _) in results.items():
        print(f"batch {batch:3d}: max |onnxruntime - pytorch| = {diff:.3e}")
    worst = worst_difference(results, args.input_file, "the exported model's")
    if worst > args.max_diff:
        raise InputError(
            f"{output}: ONNX Runtime differs from PyTorch by {worst:.3e} > {args.max_diff:g}: not written"
            f"{' (the existing file is unchanged)' if output.exists() else ''}"
        )
    checks[str(output)] = {"kind": "fp32", "max_abs_by_batch": {b: d for b, (d, _) in results.items()}}
    # Every model is made and checked in memory first; the files are written only when all of them passed.
    files = {output: (model_bytes, f"opset {args.opset}, {'BatchNorm folded' if args.fold else 'BatchNorm kept'}")}
    if int8_path:
        int8_bytes = quantize_int8(generator, args.opset)
        checks[str(int8_path)] = check_variant(generator, int8_bytes, int8_path, "int8", "int8", args.input_file)
        files[int8_path] = (int8_bytes, "int8 model, CPU only")
    if fp16_path:
        fp16_bytes = emulate_fp16(model_bytes)
        checks[str(fp16_path)] = check_variant(generator, fp16_bytes, fp16_path, "fp16 preview", "fp16", args.input_file)
        files[fp16_path] = (fp16_bytes, "fp16 arithmetic emulated on ONNX Runtime; not for atc")
    for path, (content, note) in files.items():
        write_bytes_atomic(path, content)
        print(f"wrote {path} ({note}, {len(content) / 1e6:.1f} MB)")
    if args.save_json:
        save_step(
            args.save_json,
            "export",
            {
                "input_file": str(args.input_file),
                "opset": args.opset,
                "fold": args.fold,
                "max_diff": args.max_diff,
                "models": checks,
                "versions": versions("torch", "onnx", "onnxruntime", "numpy"),
            },
        )


if __name__ == "__main__":
    run_main(main, get_args_parser())
