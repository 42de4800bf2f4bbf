"""Throughput at every batch size, as the newer revision of the guide reports it: a table, the best batch, a plot.

    python perf_sweep.py --model GAN.onnx --batch_sizes 1,4,8,16,32,64 --output sweep                  # ONNX Runtime
    python perf_sweep.py --model GAN_bs{N}.om --batch_sizes 1,4,8,16,32,64 --output sweep              # CANN host, msame
    python perf_sweep.py --model GAN_dyn.om --tool ais_bench --batch_sizes 1,4,8,16,32,64 --output sweep  # one dynamic model

Each batch size runs the offline step (run_msame.sh: ONNX Runtime for an .onnx, msame or ais_bench for an
.om) on the same number of images (--images, rounded to whole batches) of seeded latent vectors, after
--warmup untimed executions; perf_calc.py reads each log. An .om is either one model per batch size
(`{N}` in --model is replaced by the batch size) or one dynamic-batch model (atc_convert.sh
--dynamic_batch_size), run with --dymBatch N. Writes into --output:
  sweep.json  per batch: latency mean / p50 / p99 (ms), images/s per chip and per card, chips, tool
  sweep.md    the newer guide's table layout, with the best batch ("最优batch") and its reference columns
  sweep.png   images/s against batch size on log axes, this run beside the guide's reference series
              (Ascend 310 msame and ais_bench, 310P3 ais_bench, T4 trtexec), the best batch marked
  logs/       each batch size's log; the inputs and outputs are removed unless --keep_work
Needs numpy and matplotlib, no torch.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gan.cli import (
    HelpFormatter,
    InputError,
    batch_sizes,
    check_memory,
    ensure_dir,
    non_negative_int,
    positive_int,
    progress,
    refuse_overlap,
    run_main,
)
from gan.files import LATENT_DIM, atomic_path, file_digest, latent_batch, write_bin, write_bytes_atomic
from gan.perf import REFERENCE_SERIES, cpu_features, describe_cpu
from gan.records import save_step
from gan.runs import atc_record, parse_devices
from perf_calc import throughput

HERE = Path(__file__).resolve().parent


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--model", required=True, help="GAN.onnx, GAN_bs{N}.om (N replaced by each batch size) or a dynamic-batch .om")
    parser.add_argument(
        "--batch_sizes", type=batch_sizes, default="1,4,8,16,32,64", help="comma-separated batch sizes (default: the guide's six)"
    )
    parser.add_argument("--output", default="sweep", help="folder for sweep.json, sweep.md, sweep.png and logs/ (default: sweep)")
    parser.add_argument("--images", type=positive_int, default=6400, help="images per batch size, rounded to whole batches (default: 6400)")
    parser.add_argument("--warmup", type=non_negative_int, default=10, help="untimed executions before each batch size's run (default: 10)")
    parser.add_argument("--loop", type=positive_int, default=1, help="executions of each batch (default: 1)")
    parser.add_argument(
        "--tool",
        choices=["msame", "ais_bench"],
        default=None,
        help="for an .om: the tool (default: msame, ais_bench for a dynamic-batch model)",
    )
    parser.add_argument(
        "--device", type=parse_devices, default=[0], help="device id or comma-separated list, as run_msame.sh takes it (default: 0)"
    )
    parser.add_argument(
        "--chips_per_card",
        type=positive_int,
        default=None,
        help="chips of a card for the per-card figure (default: the project's one rule, perf_calc.py --help; pass 1 for a 310P)",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent vectors (default: 0)")
    parser.add_argument("--keep_work", action="store_true", help="keep the input vectors and the outputs of every run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def model_for(args, batch):
    """(model path, extra run_msame.sh flags) for one batch size."""
    if "{N}" in args.model:
        return Path(args.model.replace("{N}", str(batch))), []
    if args.model.endswith(".om"):
        return Path(args.model), ["--dymBatch", str(batch)]
    return Path(args.model), []


def hardware(args, batch):
    """What ran, in words, for the table and the plot (the CPU with the instruction sets that decide its speed)."""
    if args.model.endswith(".onnx"):
        import onnxruntime

        return f"{describe_cpu()}, ONNX Runtime {onnxruntime.__version__}"
    return f"{soc(model_for(args, batch)[0]) or 'Ascend (chip not recorded)'}, {args.tool}"


def soc(model):
    """The chip atc_convert.sh converted this .om for (its record checked against the .om), or None."""
    record, _ = atc_record(model)
    return (record or {}).get("soc_version")


def check_models(args, batches):
    """Every model of the sweep, checked before any work: present, its input and outputs (an .onnx), and the memory
    each batch size needs."""
    models = {model_for(args, b)[0] for b in batches}
    for model in models:
        if not model.is_file():
            raise InputError(f"{model}: no such model" + (" (make it with atc_convert.sh)" if model.suffix == ".om" else ""))
    features, per_row = LATENT_DIM, 4 * LATENT_DIM  # an .om: the sweep writes the latent vectors, the tool does the rest
    if args.model.endswith(".onnx"):
        from gan.onnx_models import model_signature, onnx_session
        from msame_onnxruntime import bytes_per_row, output_values_per_row

        signature = model_signature(onnx_session(args.model), args.model, features=LATENT_DIM)
        if signature.fixed_batch is not None and any(b != signature.fixed_batch for b in batches):
            raise InputError(
                f"{args.model}: takes batches of exactly {signature.fixed_batch}: sweep it with --batch_sizes {signature.fixed_batch}"
            )
        per_row = bytes_per_row(features, output_values_per_row(signature), "BIN")
    for batch in batches:
        check_memory(batch * per_row, f"--batch_sizes {batch}: one batch", "choose smaller batch sizes")
    return models


def run_batch(args, batch, work, logs):
    """One batch size: write its inputs, run the offline step, read its log. The sweep.json row."""
    model, extra = model_for(args, batch)  # present: check_models() looked before any work
    count = max(1, round(args.images / batch))
    inputs = ensure_dir(work / f"inputs_bs{batch}", "input folder")
    for i in range(count):
        write_bin(inputs / f"{i}.bin", latent_batch(args.seed, i, batch))
    command = [
        "bash",
        str(HERE / "run_msame.sh"),
        "--model",
        str(model),
        "--input",
        str(inputs),
        "--output",
        str(work / f"out_bs{batch}"),
        "--outfmt",
        "BIN",
        "--device",
        ",".join(map(str, args.device)),
        "--warmup",
        str(args.warmup),
        "--loop",
        str(args.loop),
        *extra,
    ]
    if model.suffix == ".om":
        command += ["--tool", args.tool]
    result = subprocess.run(command, capture_output=True, text=True, errors="surrogateescape")
    log = logs / f"bs{batch}.log"
    write_bytes_atomic(log, (result.stdout + result.stderr).encode(errors="surrogateescape"))
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"{log}: the offline step failed at batch {batch} (exit {result.returncode}): {last}")
    figures = throughput(log, batch_size=batch, chips=args.chips_per_card)  # the project's one chip rule, in perf_calc
    per_chip = 1000.0 * batch / figures["latency_ms"]
    return {
        "batch_size": batch,
        "batches": count,
        "images": count * batch,
        "tool": figures["tool"],
        "model": str(model),
        "latency_ms": figures["latency_ms"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "images_per_s_per_chip": per_chip,
        "chips": figures["chips"],
        "chips_rule": figures["chips_rule"],
        "images_per_s_per_card": figures["fps"],
        "spread": figures.get("spread"),
        "unstable": figures.get("unstable"),
        "log": str(log),
    }


def cv_of(row):
    return (row.get("spread") or {}).get("cv")


def best_batch(rows):
    """(best row, separated, runner-up): the highest images/s, and whether it stands above the next beyond both
    spreads (its figure less its CV above the next one's plus its CV); None where a spread is not known (msame's
    folder mode reports one average) or there is one batch size."""
    ranked = sorted(rows, key=lambda r: r["images_per_s_per_card"], reverse=True)
    best = ranked[0]
    if len(ranked) == 1:
        return best, None, None
    second = ranked[1]
    if cv_of(best) is None or cv_of(second) is None:
        return best, None, second
    low, high = best["images_per_s_per_card"] * (1 - cv_of(best)), second["images_per_s_per_card"] * (1 + cv_of(second))
    return best, low > high, second


def describe_best(best, separated, second):
    """`58,662.53 (bs64)`, the guide's layout, with what the spreads say of it."""
    named = f"{best['images_per_s_per_card']:,.2f} (bs{best['batch_size']})"
    if separated is None and second is not None:
        return f"{named}, by its mean only (no spread reported, so not told apart from bs{second['batch_size']})"
    if separated is False:
        return f"not named: {named} and {second['images_per_s_per_card']:,.2f} (bs{second['batch_size']}) lie within their spread"
    return named


def markdown(rows, best, device):
    """The newer guide's layout: one row per batch size, a best-batch row, the guide's 310 and 310P3 beside."""
    ref310 = REFERENCE_SERIES["Ascend 310 card, ais_bench, newer guide"]
    ref310p = REFERENCE_SERIES["Ascend 310P3, ais_bench --loop 10, newer guide"]
    lines = [
        f"| Throughput (images/s) | this run: {device} | latency mean / p50 / p99 (ms) | Ascend 310 (newer guide) | "
        f"Ascend 310P3 (newer guide) | this run / 310 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        b = row["batch_size"]
        spread = " / ".join("-" if row[k] is None else f"{row[k]:.4f}" for k in ("latency_ms", "p50_ms", "p99_ms"))
        ratio = f"{row['images_per_s_per_card'] / ref310[b]:.3f}" if b in ref310 else "-"
        cv = "" if cv_of(row) is None else f" ±{cv_of(row):.1%}" + (" (unstable)" if row.get("unstable") else "")
        lines.append(f"| bs{b} | {row['images_per_s_per_card']:,.2f}{cv} | {spread} | {_ref(ref310, b)} | {_ref(ref310p, b)} | {ratio} |")
    best310, best310p = max(ref310, key=ref310.get), max(ref310p, key=ref310p.get)
    lines.append(
        f"| 最优batch (best) | {describe_best(*best)} | | "
        f"{ref310[best310]:,.2f} (bs{best310}) | {ref310p[best310p]:,.2f} (bs{best310p}) | |"
    )
    return "\n".join(lines) + "\n"


def _ref(series, batch):
    return f"{series[batch]:,.2f}" if batch in series else "-"


def plot(rows, best, device, path):
    """images/s per card against batch size, log axes: this run beside the guide's reference series."""
    if rows[0]["tool"] in ("msame", "ais_bench"):
        unit = "per card"
    else:
        unit = f"(this run: {rows[0]['chips']} worker{'s' if rows[0]['chips'] > 1 else ''} on this CPU; the guide: per card)"
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    for (label, series), marker in zip(REFERENCE_SERIES.items(), ("s", "^", "v", "D")):
        ax.plot(list(series), list(series.values()), marker=marker, linestyle="--", linewidth=1, alpha=0.7, label=label)
    xs = [r["batch_size"] for r in rows]
    fps = [r["images_per_s_per_card"] for r in rows]
    spread = [f * (cv_of(r) or 0.0) for r, f in zip(rows, fps)]
    ax.errorbar(
        xs, fps, yerr=spread, marker="o", linewidth=2.5, color="black", capsize=4, label="this run (named above), ± its spread (CV)"
    )
    best_row, separated, _ = best
    ax.plot(
        [best_row["batch_size"]],
        [best_row["images_per_s_per_card"]],
        marker="*",
        markersize=18,
        color="gold" if separated is not False else "lightgrey",
        markeredgecolor="black",
        linestyle="none",
        label=f"best batch of this run: bs{best_row['batch_size']}"
        + ("" if separated is not False else " (within the spread of the next)"),
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sorted(set(xs) | {1, 4, 8, 16, 32, 64}))
    ax.set_xticklabels([str(x) for x in sorted(set(xs) | {1, 4, 8, 16, 32, 64})])
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"images/s {unit}, log scale", fontsize=9)
    title = "\n".join(textwrap.wrap(f"this run: {device}", 90))
    ax.set_title(f"GAN generator: throughput against batch size\n{title}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    # below the axes, in a band of its own: it covers no point, whatever this run's figures are
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8.5, loc="lower center", bbox_to_anchor=(0.5, 0.005), ncol=2, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def main(args):
    batches = sorted(args.batch_sizes)
    if args.model.endswith(".om"):
        args.tool = args.tool or ("msame" if "{N}" in args.model else "ais_bench")
    elif not args.model.endswith(".onnx"):
        raise InputError(f"--model {args.model}: expected an .onnx model, GAN_bs{{N}}.om, or a dynamic-batch .om")
    models = check_models(args, batches)
    refuse_overlap([(f"--model {m}", m) for m in models], [("--output", args.output)])
    output = ensure_dir(args.output, "sweep folder")
    logs, work = ensure_dir(output / "logs", "log folder"), output / "work"
    if work.exists():
        raise InputError(f"{work}: left by an earlier sweep: remove it, or pass another --output")
    started = time.perf_counter()
    device = hardware(args, batches[0])
    rows = []
    try:
        for batch in progress(batches, args.quiet, desc="sweep", unit="batch size"):
            rows.append(run_batch(args, batch, work, logs))
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    best = best_batch(rows)
    result = {
        "model": args.model,
        "device": device,
        "images": args.images,
        "warmup": args.warmup,
        "loop": args.loop,
        "seed": args.seed,
        "rows": rows,
        "best_batch": best[0]["batch_size"],
        "best_images_per_s_per_card": best[0]["images_per_s_per_card"],
        "best_separated": best[1],
        "reference_series_images_per_s_per_card": {k: {str(b): v for b, v in s.items()} for k, s in REFERENCE_SERIES.items()},
    }
    if args.model.endswith(".onnx"):
        result["cpu"] = cpu_features()
    table = markdown(rows, best, device)
    write_bytes_atomic(output / "sweep.md", table.encode())
    plot(rows, best, device, output / "sweep.png")
    result["plot"] = {"path": "sweep.png", "sha256": file_digest(output / "sweep.png", "plot")[1]}
    save_step(output / "sweep.json", "sweep", result)
    print(table, end="")
    unstable = [f"bs{r['batch_size']}" for r in rows if r.get("unstable")]
    if unstable:
        print(f"unstable: {', '.join(unstable)} (spread above 10% or a busy machine, see their logs): run again on a quiet machine")
    print(
        f"best batch: {describe_best(*best)}; wrote "
        f"{output / 'sweep.json'}, {output / 'sweep.md'}, {output / 'sweep.png'} ({time.perf_counter() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
