"""Measure this machine: the online path (PyTorch) against the offline path (ONNX Runtime), the peers a user would
try instead, and the limits that bound them all.

    python GAN_benchmark.py --pth weights/generator_mnist.pth --onnx GAN.onnx --int8 GAN_int8.onnx

At each batch size every engine runs the same latents: PyTorch eager (inference mode), torch.compile (inductor,
where it works here), ONNX Runtime fp32 (the exported model, the runner's session options and its thread choice
at start-up), ONNX Runtime int8 (with --int8) and OpenVINO fp32 (where it is installed; its absence is stated).
They are timed in interleaved blocks (--rounds blocks of about --round_seconds each, the order rotated every
round), so that a change in the machine's load hits every engine alike; a latency is the median of its blocks,
its spread their coefficient of variation, and the machine's load (CPU waits, steal, load average) is recorded
before and after. Beyond a 10% spread, or on a busy machine, a figure is marked unstable. Every latency is also
written as a log in the runner's format and read back through perf_calc.py, so one tool computes every images/s.

Beside each engine: its precision against PyTorch on the same latents (max abs, cosine), its cold start
(session or compilation, and the first inference), and its share of the roofline of its precision (gan/limits.py:
the best GEMM of numpy, ONNX Runtime and torch, int8 from ONNX Runtime's MatMulInteger, and the memory limit of
streaming the model's weights once per call). A figure above its limit is reported as a bug of the limit.
The thread table: the runner's choice at start-up against every fixed thread count, timed in the same blocks.
"""

import sys  # the root on the path first: the guide's steps and the gan package live there
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from gan.cli import (
    HelpFormatter,
    batch_sizes,
    bounded_number,
    ensure_dir,
    non_negative_float,
    one_of_list,
    positive_int,
    refuse_overlap,
    require_modules,
    run_main,
)

PEERS = ("torch_compile", "openvino")
# untimed calls before each block: ONNX Runtime's idle thread pools spin for tens of ms after their last call and,
# on 2 cores, slowed the next engine's block by up to x2 (PyTorch eager at batch 64: 3.49 ms after ONNX Runtime
# with 20 ms of lead-in, 1.77 ms with 100 ms, against 1.79 ms alone; AMD EPYC, AVX2, 2 cores)
LEAD_IN_SECONDS = 0.1
# Engines of one runtime are timed in interleaved blocks; runtimes one after another: interleaved with OpenVINO's
# threads, every 2-thread engine's blocks varied by ~30% (its idle workers compete; same machine)
RUNTIMES = {"torch": ("pytorch", "torch"), "onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--pth", required=True, help="generator checkpoint")
    parser.add_argument("--onnx", default=None, help="fp32 ONNX model (default: exported from --pth into a temporary folder)")
    parser.add_argument("--int8", default=None, help="int8 ONNX model from GAN_pth2onnx.py --quantize int8 (optional)")
    parser.add_argument("--batch_sizes", type=batch_sizes, default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument(
        "--rounds",
        type=bounded_number(int, lambda v: 2 <= v <= 1000, "a whole number from 2 to 1000"),
        default=9,
        help="timed blocks per engine and batch size, interleaved (2 at least: their spread is a figure)",
    )
    parser.add_argument("--round_seconds", type=non_negative_float, default=0.05, help="approximate length of one block")
    parser.add_argument("--skip", type=one_of_list(PEERS), default=[], help=f"peers not to measure (comma-separated: {', '.join(PEERS)})")
    parser.add_argument("--gemm_size", type=positive_int, default=2048, help="side of the square matrices the limits are measured on")
    parser.add_argument("--log_dir", default="bench_logs", help="where the msame-style logs go")
    parser.add_argument("--choice_rows", type=positive_int, default=100000, help="rows of the file the start-up thread choice is timed on")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


require_modules(__name__, get_args_parser, "torch", "onnx")  # before the imports that need them: --help works without

import numpy as np
import torch

from gan.files import latent_batch, read_bytes, write_bytes_atomic
from gan.limits import measure_limits, roofline, share_of_limit
from gan.perf import MachineLoad, cpu_features, describe_cpu, describe_load, time_interleaved, unstable_reasons, versions
from models import load_generator
from msame_onnxruntime import RUNNER_MARKER, Runner, thread_candidates
from perf_calc import throughput

# Multiply-adds of the five Linear layers, x2 for FLOPs (BatchNorm, activations and Tanh are negligible).
MODEL_FLOPS = 2 * (100 * 128 + 128 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784)


def weight_bytes(path):
    """Bytes of a model's initializers (weights, biases, scales): what each call reads at least once."""
    import onnx
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer))


def precision(output, reference):
    """max abs, mean abs and cosine against PyTorch: the project's one computation of them (GAN_compare.Agreement)."""
    from GAN_compare import Agreement

    return Agreement().add(np.asarray(output, np.float64).ravel(), np.asarray(reference, np.float64).ravel())


def txt_io(rounds, round_seconds, rows=64):
    """ms per batch of (rows, 1, 28, 28) outputs in msame's TXT: ours against np.savetxt / np.loadtxt, and the
    plain read of the same file (its MB/s, the ceiling of any reader)."""
    import io

    from gan.files import format_msame_txt, parse_txt

    images = np.tanh(np.random.default_rng(0).standard_normal((rows, 1, 28, 28))).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "0_output_0.txt"
        path.write_text(format_msame_txt(images))
        calls = {
            "write_ours": lambda: format_msame_txt(images),
            "write_np_savetxt": lambda: np.savetxt(io.StringIO(), images.reshape(-1, 28), fmt="%g", delimiter=" ", newline=" \n"),
            "read_ours": lambda: parse_txt(path, 784),
            "read_np_loadtxt": lambda: np.loadtxt(path, dtype=np.float32),
            "read_bytes": lambda: read_bytes(path),
        }
        timed = time_interleaved(calls, rounds, max(round_seconds, 0.01))
        size = path.stat().st_size
    return {**timed, "file_bytes": size}


def start_up_choice_ms(model, rows):
    """Wall time of the runner's start-up thread choice on a file of `rows` rows (the candidates' sessions included)."""
    runner = Runner(Path(model))
    started = time.perf_counter()
    runner.measure_threads(latent_batch(1, 0, rows))
    return (time.perf_counter() - started) * 1000


def write_runner_log(path, model_name, batch, latency_ms, engine, threads):
    """A log in the ONNX Runtime runner's format, which perf_calc.py reads."""
    text = (
        f"{RUNNER_MARKER}\n[INFO] model {model_name}, batch size {batch}, benchmark of {engine}, 1 worker(s) x "
        f"{threads} thread(s)\nInference average time : {latency_ms:.6f} ms\n"
    )
    write_bytes_atomic(path, text.encode())


def timed_first(make):
    """(object, ms): make() and its wall time."""
    started = time.perf_counter()
    made = make()
    return made, (time.perf_counter() - started) * 1000


class Peers:
    """The engines beside PyTorch eager and ONNX Runtime: torch.compile and OpenVINO, or why not."""

    def __init__(self, generator, onnx_path, skip):
        self.notes, self.compiled, self.openvino = {}, None, None
        if "torch_compile" in skip:
            self.notes["torch_compile"] = "skipped (--skip)"
        else:
            self.compiled = torch.compile(generator)  # compiles at its first call of each shape
        if "openvino" in skip:
            self.notes["openvino_fp32"] = "skipped (--skip)"
        else:
            try:
                import openvino

                self.openvino, self.onnx_path = openvino, str(onnx_path)
                self.notes["openvino_fp32"] = f"OpenVINO {openvino.__version__}"
            except ImportError:
                self.notes["openvino_fp32"] = "not installed (optional: pip install openvino)"

    def torch_compile(self, z):
        """(call, output, cold start) at this batch, or None where compiling fails here (its reason in notes)."""
        if self.compiled is None:
            return None
        try:
            with torch.inference_mode():
                output, first_ms = timed_first(lambda: self.compiled(torch.from_numpy(z)))
        except Exception as err:  # noqa: BLE001 - inductor needs a C compiler and raises many types; stated, not fatal
            self.notes["torch_compile"] = f"failed here: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
            self.compiled = None
            return None

        def call(tz=torch.from_numpy(z)):
            with torch.inference_mode():
                self.compiled(tz)

        return call, output.numpy(), {"compile_and_first_call_ms": first_ms}

    def openvino_fp32(self, z):
        if self.openvino is None:
            return None
        core = self.openvino.Core()
        model = core.read_model(self.onnx_path)
        model.reshape({model.inputs[0].get_any_name(): list(z.shape)})
        compiled, compile_ms = timed_first(lambda: core.compile_model(model, "CPU"))
        request = compiled.create_infer_request()
        result, first_ms = timed_first(lambda: request.infer({0: z}))
        self.notes["openvino_fp32"] = (
            f"OpenVINO {self.openvino.__version__}, default configuration: inference precision "
            f"{compiled.get_property('INFERENCE_PRECISION_HINT')}, hint {compiled.get_property('PERFORMANCE_HINT')}"
        )
        return (
            (lambda: request.infer({0: z})),
            np.array(result[compiled.outputs[0]]),
            {"compile_ms": compile_ms, "first_inference_ms": first_ms},
        )


def onnxruntime_engine(model, z):
    """The runner as it runs by default (session, then its start-up thread choice on this batch), its cold start
    (session and first inference of a fresh session), and a session per fixed thread count."""
    auto, session_ms = timed_first(lambda: Runner(Path(model)))
    _, first_ms = auto.execute(z)  # the fresh session's first call, before the choice runs it
    auto.measure_threads(z)
    fixed = {t: Runner(Path(model), t) for t in thread_candidates()}
    cold = {"session_ms": session_ms, "first_inference_ms": first_ms}
    return auto, fixed, cold


def timed_group(group, args, loads):
    """time_interleaved over one group of calls, after the previous group's idle threads settled; its load noted."""
    time.sleep(0.2)
    with MachineLoad() as load:
        timed = time_interleaved(group, args.rounds, args.round_seconds, LEAD_IN_SECONDS)
    loads.update({name: load.figures for name in group})
    return timed


def main(args):
    with tempfile.TemporaryDirectory() as scratch:  # the exported model, when no --onnx is given
        return benchmark(args, Path(scratch))


def benchmark(args, scratch):
    generator = load_generator(args.pth)
    onnx_path = args.onnx
    refuse_overlap([("--pth", args.pth), ("--onnx", args.onnx), ("--int8", args.int8)], [("--log_dir", args.log_dir)])
    log_dir = ensure_dir(args.log_dir, "log folder")
    if onnx_path is None:
        from GAN_pth2onnx import export_onnx

        onnx_path = scratch / "GAN.onnx"
        onnx_path.write_bytes(export_onnx(generator, opset=11))
    models = {"onnxruntime_fp32": onnx_path, **({"onnxruntime_int8": args.int8} if args.int8 else {})}
    weights = {"fp32": weight_bytes(onnx_path), **({"int8": weight_bytes(args.int8)} if args.int8 else {})}
    with MachineLoad() as limit_load:
        limits = measure_limits(weights, args.gemm_size)
    peers = Peers(generator, onnx_path, args.skip)
    rows, thread_rows = [], []
    for batch in args.batch_sizes:
        z = latent_batch(0, 0, batch)
        with torch.inference_mode():
            reference = generator(torch.from_numpy(z)).numpy()
        calls, outputs, cold, threads = {}, {}, {}, {}

        def eager(tz=torch.from_numpy(z)):
            with torch.inference_mode():
                generator(tz)

        calls["pytorch_eager"], outputs["pytorch_eager"], threads["pytorch_eager"] = eager, reference, torch.get_num_threads()
        for name, made in (("torch_compile", peers.torch_compile(z)), ("openvino_fp32", peers.openvino_fp32(z))):
            if made:
                calls[name], outputs[name], cold[name] = made
                threads[name] = torch.get_num_threads() if name == "torch_compile" else os.cpu_count()
        timed, loads = {}, {}
        for runtime in RUNTIMES:  # one runtime's engines interleaved; the runtimes one after another
            group = {name: call for name, call in calls.items() if name.startswith(RUNTIMES[runtime])}
            if group:
                timed.update(timed_group(group, args, loads))
        for engine, model in models.items():
            # Only this model's sessions alive, the chosen count's standing for the default: a process holding
            # several idle 2-thread pools slowed a 2-thread session at batch 1 by half (int8: 0.074 ms against
            # 0.049 ms alone, AMD EPYC, AVX2, 2 cores); the runner holds one session.
            auto, fixed, cold[engine] = onnxruntime_engine(model, z)
            chosen = auto.threads
            outputs[engine], threads[engine] = auto.execute(z)[0][0].copy(), chosen
            row = {"engine": engine, "batch_size": batch, "default_threads": chosen, "choice": auto.describe_threads()}
            del auto
            names = {t: engine if t == chosen else f"{engine} x{t}" for t in fixed}
            group = {names[t]: (lambda r=runner, z=z: r.execute(z)) for t, runner in fixed.items()}
            timed.update(timed_group(group, args, loads))
            del fixed, group
            fixed_ms = {t: timed[name] for t, name in names.items()}
            best = min(fixed_ms, key=lambda t: fixed_ms[t]["ms"])
            row.update(
                fixed_ms={str(t): f["ms"] for t, f in fixed_ms.items()},
                fixed_cv={str(t): f["cv"] for t, f in fixed_ms.items()},
                best_fixed_threads=best,
                best_fixed_ms=fixed_ms[best]["ms"],
                default_ms=fixed_ms[chosen]["ms"],
                default_over_best=fixed_ms[chosen]["ms"] / fixed_ms[best]["ms"],
                # the two told apart only where they differ beyond both spreads
                separated=abs(fixed_ms[chosen]["ms"] / fixed_ms[best]["ms"] - 1) > max(fixed_ms[chosen]["cv"], fixed_ms[best]["cv"]),
            )
            thread_rows.append(row)
        for engine in [e for e in timed if " x" not in e]:
            log = log_dir / f"{engine}_bs{batch}.log"
            model_name = Path(models.get(engine, args.pth if engine.startswith("pytorch") else onnx_path)).name
            write_runner_log(log, model_name, batch, timed[engine]["ms"], engine, threads[engine])
            figure = throughput(log)
            int8 = engine.endswith("int8")
            limit = roofline(
                limits, "int8" if int8 else "fp32", "int8" if int8 else "fp32", weights["int8" if int8 else "fp32"], MODEL_FLOPS, batch
            )
            share = share_of_limit(figure["fps"], limit["images_per_s"])
            spread = {"cv": timed[engine]["cv"], "blocks": len(timed[engine]["blocks"])}
            rows.append(
                {
                    "engine": engine,
                    "batch_size": batch,
                    "latency_ms": figure["latency_ms"],
                    "cv": spread["cv"],
                    "fps": figure["fps"],
                    "limit_images_per_s": limit["images_per_s"],
                    "limit_bound": limit["bound"],
                    "share_of_limit": share,
                    "above_limit": share is None,
                    "precision_vs_pytorch": precision(outputs[engine], reference),
                    "cold_start_ms": cold.get(engine),
                    "threads": threads[engine],
                    "unstable": unstable_reasons(spread, loads[engine]),
                    "load": loads[engine],
                    "log": str(log),
                }
            )
    txt = txt_io(args.rounds, args.round_seconds)
    result = {
        "machine": {**cpu_features(), "cpu": cpu_features()["model"], "torch_threads": torch.get_num_threads()},
        "versions": versions("torch", "onnxruntime", "onnx", "numpy", "openvino"),
        "model_mflops_per_image": MODEL_FLOPS / 1e6,
        "weight_bytes": weights,
        "limits": limits,
        "limits_load": limit_load.figures,
        "rows": rows,
        "threads": thread_rows,
        "peers": peers.notes,
        "txt_io_ms_per_batch_of_64": txt,
        "start_up_choice_ms_by_rows": {str(n): start_up_choice_ms(onnx_path, n) for n in (64, args.choice_rows)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result, log_dir, args)
    return 0


def print_tables(result, log_dir, args):
    versions_, limits = result["versions"], result["limits"]
    print(
        f"machine: {describe_cpu()}; torch {versions_['torch']} ({result['machine']['torch_threads']} threads), onnxruntime {versions_['onnxruntime']}"
    )
    fp32, int8 = limits["fp32"], limits["int8"]
    print(
        f"limits ({limits['gemm_size']}-square matrices, the best of 5 blocks, their CV in brackets): fp32 {fp32['rate']:.1f} GFLOP/s "
        f"({fp32['engine']}; "
        + ", ".join(f"{e} {f['gemm']['rate']:.1f} ({f['gemm']['cv']:.0%})" for e, f in limits["engines"].items() if e != "onnxruntime int8")
        + f"), int8 {int8['rate']:.1f} GOP/s ({int8['engine']}, {int8['cv']:.0%})"
    )
    blas = limits["numpy_blas"] or [{}]
    removed = ", ".join(f"{k}={v}" for k, v in (limits["numpy_overrides_removed"] or {}).items()) or "none set"
    print(
        f"numpy's BLAS in its own process: {blas[0].get('internal_api')} {blas[0].get('version')} {blas[0].get('architecture')} kernels, overrides removed: {removed}"
    )
    for label, b in limits["bandwidth"].items():
        print(
            f"memory: a {b['bytes'] / 1e6:.2f} MB weight matrix ({label} model) streamed at {b['rate']:.1f} GB/s ({b['engine']}, {b['cv']:.0%})"
        )
    print(
        f"{'engine':<18} {'batch':>5} {'latency_ms':>10} {'spread':>7} {'images/s':>10} {'x eager':>7} {'of roofline':>26} {'max abs':>9} {'cosine':>9}"
    )
    eager = {r["batch_size"]: r["fps"] for r in result["rows"] if r["engine"] == "pytorch_eager"}
    for r in result["rows"]:
        share = (
            f"{r['share_of_limit']:.1%} of {r['limit_images_per_s']:,.0f} ({r['limit_bound'][:3]})"
            if not r["above_limit"]
            else "ABOVE its limit: a limit bug"
        )
        p = r["precision_vs_pytorch"]
        print(
            f"{r['engine']:<18} {r['batch_size']:>5} {r['latency_ms']:>10.4f} {r['cv']:>6.1%} {r['fps']:>10,.0f} "
            f"{r['fps'] / eager[r['batch_size']]:>7.2f} {share:>26} {p['max_abs']:>9.2e} {p['cosine']:>9.6f}"
            + ("  unstable: " + "; ".join(r["unstable"]) if r["unstable"] else "")
        )
    print(
        "cold start (ms): "
        + "; ".join(
            f"{r['engine']} bs{r['batch_size']}: " + ", ".join(f"{k.replace('_ms', '')} {v:.1f}" for k, v in r["cold_start_ms"].items())
            for r in result["rows"]
            if r["cold_start_ms"]
        )
    )
    print("peers: " + "; ".join(f"{k}: {v}" for k, v in result["peers"].items()))
    print(
        f"{'thread choice':<18} {'batch':>5} {'chosen':>6} {'its time':>10} {'best fixed':>13} {'chosen/best':>11}  every fixed count (CV)"
    )
    for r in result["threads"]:
        print(
            f"{r['engine']:<18} {r['batch_size']:>5} {r['default_threads']:>6} {r['default_ms']:>7.4f} ms {r['best_fixed_ms']:>7.4f} ms x{r['best_fixed_threads']:<2} "
            f"{r['default_over_best']:>11.3f}  "
            + ", ".join(f"{t}: {ms:.4f} ms ({r['fixed_cv'][t]:.0%})" for t, ms in r["fixed_ms"].items())
            + ("" if r["separated"] or r["default_over_best"] == 1 else "  (within the spread: not told apart)")
        )
    txt = result["txt_io_ms_per_batch_of_64"]
    mb = txt["file_bytes"] / 1e6
    print(
        f"msame TXT, one batch of 64 ({mb:.2f} MB): write {txt['write_ours']['ms']:.2f} ms (np.savetxt {txt['write_np_savetxt']['ms']:.2f} ms, "
        f"x{txt['write_np_savetxt']['ms'] / txt['write_ours']['ms']:.2f}), read {txt['read_ours']['ms']:.2f} ms = {mb / txt['read_ours']['ms'] * 1000:.0f} MB/s "
        f"(np.loadtxt {txt['read_np_loadtxt']['ms']:.2f} ms, x{txt['read_np_loadtxt']['ms'] / txt['read_ours']['ms']:.2f}; the plain read "
        f"{mb / txt['read_bytes']['ms'] * 1000:,.0f} MB/s)"
    )
    print(
        "start-up thread choice (wall time, the candidates' sessions included): "
        + ", ".join(f"{int(n):,} rows {ms:.0f} ms" for n, ms in result["start_up_choice_ms_by_rows"].items())
    )
    loads = [r["load"] for r in result["rows"]]
    print(f"machine while timed: limits: {describe_load(result['limits_load'])}; last batch: {describe_load(loads[-1])}")
    unstable = [r for r in result["rows"] if r["unstable"]]
    if unstable:
        print(
            f"unstable: {len(unstable)} of {len(result['rows'])} figures (spread above 10% or a busy machine): run again on a quiet machine"
        )
    print(
        f"(latency: median of {args.rounds} interleaved blocks of about {args.round_seconds:g} s; spread: their CV; "
        f"images/s by perf_calc.py from the logs in {log_dir}/)"
    )


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
