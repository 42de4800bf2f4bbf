"""Which int8 scheme: precision over the guide's workload and speed at batch 64, per ONNX Runtime quantization scheme.

    python GAN_int8_schemes.py --pth weights/generator_mnist.pth
    python GAN_int8_schemes.py --pth weights/generator_mnist.pth --emulate_cpu EPYC-Milan    # + an AVX2 CPU, emulated

Each scheme quantizes the folded graph (dynamic: 8- or 7-bit weights (reduce_range), per tensor or per output
channel, s8 or u8 weights; static QDQ: s8 activations calibrated on the generator's own latents, 100 x 64 latent
vectors of another seed than the test's). For each: max abs, mean abs and cosine against PyTorch over the guide's
workload (100 x 64 images, GAN_testdata.py's seed 0) and whether GAN_compare's int8 preset passes; ms per batch of 64
on this machine's CPU (2 threads, the median of rounds alternating between the schemes) beside fp32. With
--emulate_cpu MODEL (qemu-x86_64 installed, e.g. Debian's qemu-user), the precision part runs again on that
emulated CPU, whose instruction sets decide ONNX Runtime's kernels (EPYC-Milan: AVX2 without AVX-512 or VNNI), and
the table says whether its outputs are bit-identical to this machine's. Emulated speed means nothing: only precision
is read there. GAN_pth2onnx.py --quantize int8 uses the scheme marked "default".
"""

import sys  # the root on the path first: the guide's steps and the gan package live there
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gan.cli import HelpFormatter, InputError, import_required, positive_int, run_main
from gan.files import latent_batch
from gan.perf import describe_cpu

HERE = Path(__file__).resolve().parent.parent  # the repository root: the pipeline, its weights and its scripts
SCHEMES = {  # name: (how, quantize_dynamic / quantize_static keyword arguments)
    "dynamic, per tensor": ("dynamic", {"per_channel": False, "reduce_range": False}),
    "dynamic, per channel": ("dynamic", {"per_channel": True, "reduce_range": False}),
    "dynamic, per tensor, reduce_range": ("dynamic", {"per_channel": False, "reduce_range": True}),
    "dynamic, per channel, reduce_range (default)": ("dynamic", {"per_channel": True, "reduce_range": True}),
    "dynamic, per channel, u8 weights": ("dynamic", {"per_channel": True, "reduce_range": False, "weights": "u8"}),
    "static QDQ, s8 activations, per channel": ("static", {"per_channel": True}),
}


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--pth", required=True, help="generator checkpoint")
    parser.add_argument("--batches", type=positive_int, default=100, help="batches of 64 of the workload (default: 100, the guide's)")
    parser.add_argument("--rounds", type=positive_int, default=7, help="timed rounds per scheme (default: 7)")
    parser.add_argument("--emulate_cpu", default=None, help="also check precision on this qemu CPU model (e.g. EPYC-Milan: AVX2 only)")
    return parser


def build(generator, folder):
    """{scheme: model path} of every scheme, and the fp32 folded model, in `folder`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    from GAN_pth2onnx import export_onnx

    logging.getLogger().setLevel(logging.ERROR)
    folded = folder / "fp32_folded.onnx"
    folded.write_bytes(export_onnx(generator, 11, fold=True))
    (folder / "fp32_folded13.onnx").write_bytes(export_onnx(generator, 13, fold=True))  # QDQ with per-channel axes needs 13

    class Latents(CalibrationDataReader):
        def __init__(self):
            self.batches = [{"Z": latent_batch(12345, i, 64)} for i in range(100)]

        def get_next(self):
            return self.batches.pop() if self.batches else None

    models = {"fp32 (folded)": folded}
    for k, (name, (how, options)) in enumerate(SCHEMES.items()):
        path = folder / f"scheme{k}.onnx"
        if how == "dynamic":
            weights = QuantType.QUInt8 if options.get("weights") == "u8" else QuantType.QInt8
            quantize_dynamic(
                str(folded), str(path), weight_type=weights, per_channel=options["per_channel"], reduce_range=options["reduce_range"]
            )
        else:
            quantize_static(
                str(folder / "fp32_folded13.onnx"),
                str(path),
                Latents(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=options["per_channel"],
            )
        models[name] = path
    return models


def outputs_of(models, z, folder):
    """{scheme: outputs (images, 784)} on this CPU, written as .npy beside the models (the emulated run reads them)."""
    import onnxruntime as ort

    found = {}
    for name, path in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 2, 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        found[name] = np.concatenate([session.run(None, {"Z": z[k : k + 64]})[0].reshape(-1, 784) for k in range(0, len(z), 64)])
        np.save(folder / f"{path.stem}.out.npy", found[name])
    return found


def emulated_outputs(models, folder, cpu):
    """{scheme: outputs} computed by this script under qemu-x86_64 -cpu `cpu` (the same interpreter, another CPU)."""
    if not shutil.which("qemu-x86_64"):
        raise InputError("--emulate_cpu: qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    emulated = folder / "emulated"
    emulated.mkdir()
    for path in models.values():
        shutil.copy(path, emulated / path.name)
    shutil.copy(folder / "z.npy", emulated / "z.npy")
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "z = np.load('z.npy')\n"
        "for path in sys.argv[1:]:\n"
        "    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.log_severity_level = 3\n"
        "    s = ort.InferenceSession(path, o, providers=['CPUExecutionProvider'])\n"
        "    out = np.concatenate([s.run(None, {'Z': z[k:k + 64]})[0].reshape(-1, 784) for k in range(0, len(z), 64)])\n"
        "    np.save(path[:-5] + '.out.npy', out)\n"
    )
    interpreter = os.path.realpath(sys.executable)
    result = subprocess.run(
        ["qemu-x86_64", "-cpu", cpu, interpreter, "-c", code, *[p.name for p in models.values()]],
        cwd=emulated,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise InputError(f"--emulate_cpu {cpu}: the emulated run failed: {(result.stderr.strip().splitlines() or ['no message'])[-1]}")
    return {name: np.load(emulated / f"{path.stem}.out.npy") for name, path in models.items()}


def precision(outputs, expected):
    """(max abs, mean abs, cosine) of a scheme's outputs against PyTorch, computed as GAN_compare.py computes them."""
    from GAN_compare import Agreement

    figures = Agreement().add(expected.ravel(), outputs.astype(np.float64).ravel())
    return figures["max_abs"], figures["mean_abs"], figures["cosine"]


def speeds(models, rounds):
    """{scheme: ms per batch of 64} on this CPU, 2 threads, the median of rounds that alternate between schemes."""
    import onnxruntime as ort

    z = latent_batch(1, 0, 64)
    sessions = {}
    for name, path in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 2, 3
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    times = {name: [] for name in models}
    for r in range(rounds):
        for name in list(models)[:: 1 if r % 2 == 0 else -1]:
            session = sessions[name]
            for _ in range(20):
                session.run(None, {"Z": z})
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < 0.2:
                session.run(None, {"Z": z})
                calls += 1
            times[name].append((time.perf_counter() - start) * 1000 / calls)
    return {name: statistics.median(t) for name, t in times.items()}


def main(args):
    import_required("torch", "onnx")
    import torch

    from GAN_compare import TOLERANCES, judge
    from models import load_generator

    generator = load_generator(args.pth)
    z = np.concatenate([latent_batch(0, i, 64) for i in range(args.batches)])
    with torch.inference_mode():
        expected = generator(torch.from_numpy(z)).numpy().reshape(-1, 784).astype(np.float64)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        np.save(folder / "z.npy", z)
        models = build(generator, folder)
        native = outputs_of(models, z, folder)
        emulated = emulated_outputs(models, folder, args.emulate_cpu) if args.emulate_cpu else None
        ms = speeds(models, args.rounds)
    print(f"this CPU: {describe_cpu()}; {len(z):,} images against PyTorch; ms per batch of 64, 2 threads")
    header = f"{'scheme':<46} {'max abs':>8} {'mean abs':>9} {'cosine':>9} {'int8 preset':>11} {'ms bs64':>8} {'x fp32':>7}"
    if emulated:
        header += f"  | on {args.emulate_cpu} (emulated): {'max abs':>8} {'mean abs':>9} {'preset':>6} identical"
    print(header)
    for name in models:
        max_abs, mean_abs, cos = precision(native[name], expected)
        verdict = "PASS" if judge(max_abs, mean_abs, cos, TOLERANCES["int8"]) else "FAIL"
        line = (
            f"{name:<46} {max_abs:>8.3f} {mean_abs:>9.2e} {cos:>9.6f} {verdict:>11} {ms[name]:>8.3f} {ms['fp32 (folded)'] / ms[name]:>7.2f}"
        )
        if emulated:
            e_max, e_mean, e_cos = precision(emulated[name], expected)
            e_verdict = "PASS" if judge(e_max, e_mean, e_cos, TOLERANCES["int8"]) else "FAIL"
            line += f"  | {'':>{len(args.emulate_cpu) + 15}} {e_max:>8.3f} {e_mean:>9.2e} {e_verdict:>6} {np.array_equal(emulated[name], native[name])}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
