"""Time the whole pipeline (run_pipeline.sh) on the guide's workload, and at --scale times the work.

    python GAN_pipeline_benchmark.py --pth weights/generator_mnist.pth --iters 100 --repeats 3 --scale 10

Runs run_pipeline.sh --repeats times at --iters x --batch_size and once at --scale x --iters, each in a
new work folder (removed afterwards unless --keep), and prints per-step wall time and peak memory
(median over the repeats), the median total, and the large run's ratios to it: a pipeline that
streams file by file grows linearly in time and not at all in memory.
"""

import sys  # the root on the path first: the guide's steps and the gan package live there
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from gan.cli import HelpFormatter, InputError, outfmt, positive_int, run_main

HERE = Path(__file__).resolve().parent.parent  # the repository root: the pipeline, its weights and its scripts
STEP_LINE = re.compile(r"^  (\w+)\s+([0-9.]+) s(?:\s+(\d+) MB)?$", re.M)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--pth", default=str(HERE / "weights" / "generator_mnist.pth"), help="generator checkpoint")
    parser.add_argument("--iters", type=positive_int, default=100, help="batches of the base workload")
    parser.add_argument("--batch_size", type=positive_int, default=64, help="batch size")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs of the base workload")
    parser.add_argument("--scale", type=int, default=10, help="the large run does scale x iters (0: no large run)")
    parser.add_argument("--outfmt", type=outfmt, default="TXT", choices=["TXT", "BIN"], help="offline output format, any case")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (made in TMPDIR; their paths are printed)")
    return parser


def run_pipeline(pth, iters, batch_size, outfmt, keep):
    workdir = Path(tempfile.mkdtemp(prefix=f"pipeline_{iters}x{batch_size}_"))
    try:
        result = subprocess.run(
            [
                "bash",
                str(HERE / "run_pipeline.sh"),
                "--pth",
                str(pth),
                "--workdir",
                str(workdir),
                "--iters",
                str(iters),
                "--batch_size",
                str(batch_size),
                "--outfmt",
                outfmt,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            kept = f", its workdir kept: {workdir}" if keep else ""
            raise InputError(f"run_pipeline.sh failed ({result.returncode}){kept}: {result.stderr.strip().splitlines()[-1:]}")
        if keep:
            print(f"kept {workdir}", flush=True)
        steps = {name: (float(seconds), int(mb) if mb else None) for name, seconds, mb in STEP_LINE.findall(result.stdout)}
        return steps
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(args):
    if not Path(args.pth).is_file():
        raise InputError(f"{args.pth}: no such checkpoint")
    runs = []
    for k in range(args.repeats):
        runs.append(run_pipeline(args.pth, args.iters, args.batch_size, args.outfmt, args.keep))
        print(f"run {k + 1}/{args.repeats} ({args.iters} x {args.batch_size}): total {runs[-1]['total'][0]:.2f} s", flush=True)
    names = [n for n in runs[0] if n != "total"] + ["total"]
    median = {n: (statistics.median(r[n][0] for r in runs), max((r[n][1] or 0) for r in runs)) for n in names}
    large = None
    if args.scale:
        large = run_pipeline(args.pth, args.iters * args.scale, args.batch_size, args.outfmt, args.keep)
        print(f"large run ({args.iters * args.scale} x {args.batch_size}): total {large['total'][0]:.2f} s", flush=True)
    header = f"{'step':<10} {'time_s':>8} {'peak_MB':>8}"
    if large:
        header += f" {f'x{args.scale} time_s':>12} {f'x{args.scale} peak_MB':>13} {'time ratio':>10} {'memory ratio':>12}"
    print(header)
    for name in names:
        line = f"{name:<10} {median[name][0]:>8.2f} {median[name][1] or '-':>8}"
        if large:
            ratio = large[name][0] / median[name][0]
            memory = f"{(large[name][1] or 0) / median[name][1]:.2f}" if median[name][1] else "-"
            line += f" {large[name][0]:>12.2f} {large[name][1] or '-':>13} {ratio:>10.2f} {memory:>12}"
        print(line)
    print(f"(base: median of {args.repeats} runs of {args.iters} x {args.batch_size}; peak memory is the largest seen)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
