"""Measure this machine: the online path (PyTorch eager) against the offline path (ONNX Runtime), and its limit.

    python GAN_benchmark.py --pth weights/generator_mnist.pth

At each batch size, each engine runs the same latents: after a warm-up, --rounds rounds of calls, each
round long enough to last about --round_seconds; a round's figure is its mean time per call, and the
reported latency is the median of the rounds (robust to a noisy neighbour). Engines: PyTorch eager
(inference mode), ONNX Runtime fp32 (the exported model, with the runner's session options) and, with
--int8, the int8 model of GAN_pth2onnx.py --quantize int8. The machine's limit for this model is a
large fp32 matrix product measured in the same run, divided by the model's FLOPs per image (3.0 M).
Every latency is also written as a log in the ONNX Runtime runner's format and read back through
perf_calc.py, so the same tool computes every images/s figure.

The ONNX Runtime engines run as the runner runs them by default: the thread count chosen by a measurement
at start-up on that batch. Beside it, every fixed thread count is timed the same way (one pass forward and
one backward, the better kept), so the table shows what the default chose against the best fixed choice.
"""

from gan_cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gan_cli import HelpFormatter, batch_sizes, ensure_dir, non_negative_float, positive_int, refuse_overlap, require_modules, run_main


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--pth", required=True, help="generator checkpoint")
    parser.add_argument("--onnx", default=None, help="fp32 ONNX model (default: exported from --pth into a temporary folder)")
    parser.add_argument("--int8", default=None, help="int8 ONNX model from GAN_pth2onnx.py --quantize int8 (optional)")
    parser.add_argument("--batch_sizes", type=batch_sizes, default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--rounds", type=positive_int, default=7, help="timed rounds per engine and batch size")
    parser.add_argument("--round_seconds", type=non_negative_float, default=0.3, help="approximate length of one round")
    parser.add_argument("--log_dir", default="bench_logs", help="where the msame-style logs go")
    parser.add_argument("--choice_rows", type=positive_int, default=100000, help="rows of the file the start-up thread choice is timed on")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


require_modules(__name__, get_args_parser, "torch", "onnx")  # before the imports that need them: --help works without

import numpy as np
import torch

from gan_io import latent_batch, write_bytes_atomic
from gan_perf import cpu_features, describe_cpu
from models import load_generator
from msame_onnxruntime import RUNNER_MARKER, Runner, thread_candidates
from perf_calc import throughput

# Multiply-adds of the five Linear layers, x2 for FLOPs (BatchNorm, activations and Tanh are negligible).
MODEL_FLOPS = 2 * (100 * 128 + 128 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784)


def time_rounds(call, rounds, round_seconds):
    """Median over rounds of the mean time per call (ms), after a warm-up."""
    start = time.perf_counter()
    calls = 0
    while calls < 20 or time.perf_counter() - start < 0.2:  # warm-up: caches, thread pools, allocator
        call()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    repeats = max(5, int(round_seconds / per_call))
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        means.append((time.perf_counter() - start) * 1000 / repeats)
    return statistics.median(means)


def time_each(calls, rounds, round_seconds):
    """{name: ms per call} for several calls, each timed by time_rounds in one pass forward and one backward; a
    call's figure is the better of its two, so a drift in the machine's load favours none of them."""
    names = list(calls)
    passes = [{name: time_rounds(calls[name], rounds, round_seconds) for name in order} for order in (names, names[::-1])]
    return {name: min(p[name] for p in passes) for name in names}


def matmul_peak_gflops(rounds, round_seconds, n=2048):
    """The best fp32 matrix-product rate of this machine (torch and numpy BLAS), in GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    rates = {}
    for name, call in (("torch", lambda: torch.mm(ta, tb)), ("numpy", lambda: a @ b)):
        rates[name] = 2 * n**3 / (time_rounds(call, rounds, round_seconds) / 1000) / 1e9
    return max(rates.values()), rates


def txt_io_ms(rounds, round_seconds, rows=64):
    """ms per batch of (rows, 1, 28, 28) outputs: msame-format TXT writing against np.savetxt, reading against np.loadtxt."""
    import io

    from gan_io import format_msame_txt, parse_txt

    images = np.tanh(np.random.default_rng(0).standard_normal((rows, 1, 28, 28))).astype(np.float32)

    def savetxt():
        np.savetxt(io.StringIO(), images.reshape(-1, 28), fmt="%g", delimiter=" ", newline=" \n")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "0_output_0.txt"
        path.write_text(format_msame_txt(images))
        return {
            "write_ours": time_rounds(lambda: format_msame_txt(images), rounds, round_seconds),
            "write_np_savetxt": time_rounds(savetxt, rounds, round_seconds),
            "read_ours": time_rounds(lambda: parse_txt(path, 784), rounds, round_seconds),
            "read_np_loadtxt": time_rounds(lambda: np.loadtxt(path, dtype=np.float32), rounds, round_seconds),
        }


def start_up_choice_ms(model, rows):
    """Wall time of the runner's start-up thread choice on a file of `rows` rows (the candidates' sessions included)."""
    runner = Runner(Path(model))
    batch = latent_batch(1, 0, rows)
    started = time.perf_counter()
    runner.measure_threads(batch)
    return (time.perf_counter() - started) * 1000


def write_runner_log(path, model_name, batch, latency_ms, engine, threads):
    """A log in the ONNX Runtime runner's format, which perf_calc.py reads."""
    text = (
        f"{RUNNER_MARKER}\n[INFO] model {model_name}, batch size {batch}, benchmark of {engine}, 1 worker(s) x "
        f"{threads} thread(s)\nInference average time : {latency_ms:.6f} ms\n"
    )
    write_bytes_atomic(path, text.encode())


def main(args):
    with tempfile.TemporaryDirectory() as scratch:  # the exported model, when no --onnx is given
        return benchmark(args, Path(scratch))


def benchmark(args, scratch):
    batches = args.batch_sizes
    generator = load_generator(args.pth)
    onnx_path = args.onnx
    if onnx_path is None:
        from GAN_pth2onnx import export_onnx

        onnx_path = scratch / "GAN.onnx"
        onnx_path.write_bytes(export_onnx(generator, opset=11))
    threads = torch.get_num_threads()
    models = {"onnxruntime_fp32": onnx_path, **({"onnxruntime_int8": args.int8} if args.int8 else {})}
    refuse_overlap([("--pth", args.pth), ("--onnx", args.onnx), ("--int8", args.int8)], [("--log_dir", args.log_dir)])
    log_dir = ensure_dir(args.log_dir, "log folder")

    peak, peak_by_lib = matmul_peak_gflops(args.rounds, args.round_seconds)
    limit = peak * 1e9 / MODEL_FLOPS
    rows, thread_rows = [], []
    for batch in batches:
        z = latent_batch(0, 0, batch)
        tz = torch.from_numpy(z)

        def eager(tz=tz):
            with torch.inference_mode():
                generator(tz)

        latencies = {"pytorch_eager": (time_rounds(eager, args.rounds, args.round_seconds), threads, Path(args.pth).name)}
        # torch's OpenMP threads spin for a while after their last parallel region (measured: under 50 ms here),
        # and on 2 cores they would slow whatever is timed next, the thread measurement included
        time.sleep(0.2)
        for engine, model in models.items():
            # The runner's default (threads measured at start-up on this batch) against every fixed choice.
            auto = Runner(Path(model)).measure_threads(z)
            fixed = {t: Runner(Path(model), t) for t in thread_candidates()}
            timed = time_each(
                {"auto": lambda r=auto, z=z: r.execute(z), **{t: (lambda r=r, z=z: r.execute(z)) for t, r in fixed.items()}},
                args.rounds,
                args.round_seconds,
            )
            best = min(fixed, key=lambda t: timed[t])
            thread_rows.append(
                {
                    "engine": engine,
                    "batch_size": batch,
                    "default_threads": auto.threads,
                    "default_ms": timed["auto"],
                    "fixed_ms": {str(t): timed[t] for t in fixed},
                    "best_fixed_threads": best,
                    "best_fixed_ms": timed[best],
                    "default_over_best": timed["auto"] / timed[best],
                    "choice_ms": auto.choice.seconds * 1000 if auto.choice else 0.0,
                    "choice_separated": auto.choice.separated if auto.choice else True,
                }
            )
            latencies[engine] = (timed["auto"], auto.threads, Path(model).name)
        for engine, (latency, engine_threads, model_name) in latencies.items():
            log = log_dir / f"{engine}_bs{batch}.log"
            write_runner_log(log, model_name, batch, latency, engine, engine_threads)
            figure = throughput(log)
            rows.append(
                {
                    "engine": engine,
                    "batch_size": batch,
                    "latency_ms": figure["latency_ms"],
                    "fps": figure["fps"],
                    "share_of_limit": figure["fps"] / limit,
                    "threads": engine_threads,
                    "log": str(log),
                }
            )
    engines = ["pytorch_eager", *models]
    fps = {(r["engine"], r["batch_size"]): r["fps"] for r in rows}
    ratios = {b: {e: fps[(e, b)] / fps[("pytorch_eager", b)] for e in engines if e != "pytorch_eager"} for b in batches}
    machine = {
        "cpu": cpu_features()["model"],
        "isa": cpu_features()["isa"],
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
    }
    txt = txt_io_ms(args.rounds, args.round_seconds)
    choice_cost = {str(rows): start_up_choice_ms(onnx_path, rows) for rows in (64, args.choice_rows)}
    result = {
        "machine": machine,
        "txt_io_ms_per_batch_of_64": txt,
        "matmul_peak_gflops": peak,
        "matmul_gflops_by_library": peak_by_lib,
        "model_mflops_per_image": MODEL_FLOPS / 1e6,
        "limit_images_per_s": limit,
        "rows": rows,
        "threads": thread_rows,
        "ratio_to_pytorch": {str(b): r for b, r in ratios.items()},
        "start_up_choice_ms_by_rows": choice_cost,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"machine: {describe_cpu()}, torch {machine['torch']} ({threads} threads), onnxruntime {machine['onnxruntime']}")
    print(
        f"limit: fp32 matmul {peak:.1f} GFLOP/s (torch {peak_by_lib['torch']:.1f}, numpy {peak_by_lib['numpy']:.1f}) / "
        f"{MODEL_FLOPS / 1e6:.3f} MFLOP per image = {limit:,.0f} images/s"
    )
    print(f"{'engine':<18} {'batch':>5} {'latency_ms':>11} {'images/s':>12} {'x pytorch':>9} {'of limit':>9}")
    for row in rows:
        ratio = fps[(row["engine"], row["batch_size"])] / fps[("pytorch_eager", row["batch_size"])]
        print(
            f"{row['engine']:<18} {row['batch_size']:>5} {row['latency_ms']:>11.4f} {row['fps']:>12,.0f} {ratio:>9.2f} "
            f"{row['share_of_limit']:>9.1%}"
        )
    print(f"{'thread choice':<18} {'batch':>5} {'default':>14} {'best fixed':>14} {'default/best':>12}  every fixed choice")
    for row in thread_rows:
        print(
            f"{row['engine']:<18} {row['batch_size']:>5} {row['default_ms']:>8.4f} ms x{row['default_threads']:<2} "
            f"{row['best_fixed_ms']:>8.4f} ms x{row['best_fixed_threads']:<2} {row['default_over_best']:>12.3f}  "
            + ", ".join(f"{t}: {ms:.4f} ms" for t, ms in row["fixed_ms"].items())
        )
    print(
        f"msame TXT, one batch of 64: write {txt['write_ours']:.2f} ms (np.savetxt {txt['write_np_savetxt']:.2f} ms, "
        f"x{txt['write_np_savetxt'] / txt['write_ours']:.2f}), read {txt['read_ours']:.2f} ms "
        f"(np.loadtxt {txt['read_np_loadtxt']:.2f} ms, x{txt['read_np_loadtxt'] / txt['read_ours']:.2f})"
    )
    for b in batches:
        if ("onnxruntime_int8", b) in fps:
            print(f"int8 / fp32 at batch {b}: x{fps[('onnxruntime_int8', b)] / fps[('onnxruntime_fp32', b)]:.2f} images/s")
    print(
        "start-up thread choice (wall time, the candidates' sessions included): "
        + ", ".join(f"{int(rows):,} rows {ms:.0f} ms" for rows, ms in choice_cost.items())
    )
    print(f"(latency: median of {args.rounds} rounds of the mean time per call; images/s by perf_calc.py from the logs in {log_dir}/)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
