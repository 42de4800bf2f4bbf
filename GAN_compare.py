"""Precision check (the guide's section 6.2): offline outputs against the online PyTorch outputs of the same latents.

    python GAN_compare.py --online_path=images --offline_path=out

Pairs every online images/<i>.bin with offline output i (msame or ais_bench naming; TXT, BIN or NPY; the
newest run under --offline_path, refused if it is not complete; gan/runs.py), prints per-batch and overall max absolute error, mean absolute
error and cosine similarity, then one PASS/FAIL line against the tolerance preset:
  fp32  max abs <= 1e-4, cosine >= 0.99999  (ONNX Runtime, or an .om built with --precision_mode must_keep_origin_dtype)
  fp16  max abs <= 5e-2, mean abs <= 1e-3, cosine >= 0.9999  (an .om built with atc's default force_fp16)
  int8  max abs <= 1.0, mean abs <= 1e-2, cosine >= 0.999  (GAN_pth2onnx.py --quantize int8 on ONNX Runtime)
Exits 1 on FAIL (its one line on stderr), when a batch is missing on either side, or when either side holds NaN or Inf.
--online_path may also be an offline run (an output root or a run folder): one run is then checked
against another, for example an NPU run against the ONNX Runtime run, or the fp16 preview against the NPU.
Also saves a picture of the first batch:
reference | offline | |difference| magnified until its largest value is white, labelled, with the factor.

Element-wise, as Polygraphy's `polygraphy run` reports: an element fails only where its absolute error
exceeds --atol AND its relative error (against the reference) exceeds --rtol; the count and share of
failing elements, max / mean / p50 / p90 / p99 of the absolute and the relative error, NaN and Inf counts,
and the smallest atol (at the given rtol) and rtol (at the given atol) with which every element would
pass. Without --atol or --rtol these figures are printed at Polygraphy's defaults (1e-5) and do not judge;
with either, the element-wise check joins the verdict. --error_plot draws the error against the
reference's magnitude and its histogram. Needs numpy, Pillow and matplotlib (the plot).
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from gan.cli import HelpFormatter, InputError, check_output_file, non_negative_float, refuse_overlap, run_main, short_list
from gan.files import IMG_SIZE, atomic_path, file_digest, grid_array, numbered_files, read_online, read_output
from gan.precision import POLYGRAPHY_TOLERANCE, ErrorStatistics, describe_needed
from gan.records import save_step
from gan.runs import list_output_files, open_run

TOLERANCES = {  # name: (max abs error, min cosine similarity, max mean abs error or None)
    "fp32": (1e-4, 0.99999, None),
    # fp16: measured with the fp16 preview (GAN_pth2onnx.py --emulate_fp16, every operator rounded to fp16) on the
    # bundled generator over 6400 images: max 2.5e-2 (3 images have a pixel above 2e-2, all on Tanh's steep part;
    # 99.99% of pixels within 1.1e-2), mean 2.0e-4, cosine 0.9999997. The bounds leave 2x / 5x for what the preview
    # does not model (the chip's accumulation order, fused operators); int8's errors (mean 5.6e-3) stay outside.
    "fp16": (5e-2, 0.9999, 1e-3),
    # int8: activations are quantized per batch to 256 levels and weights to 7 bits, so a rare pixel on Tanh's steep
    # part moves by up to ~0.8 (the default int8 model over the guide's 6,400 images: max 0.799, mean 6.75e-3, cosine
    # 0.99963, the same on AMX and AVX2); the image as a whole stays put, so the preset bounds the mean and the
    # cosine, and the max only against gross errors (8-bit weights on an AVX2 CPU without VNNI, which saturate: 1.77).
    "int8": (1.0, 0.999, 1e-2),
}


def judge(max_abs, mean_abs, cosine, limits):
    """Whether figures pass a preset (max abs, min cosine, max mean abs or None): the one rule, here and in the export."""
    max_abs_limit, cosine_limit, mean_abs_limit = limits
    return max_abs <= max_abs_limit and cosine >= cosine_limit and (mean_abs_limit is None or mean_abs <= mean_abs_limit)


def describe_limits(limits):
    max_abs_limit, cosine_limit, mean_abs_limit = limits
    return (
        f"max_abs <= {max_abs_limit:g}" + (f", mean_abs <= {mean_abs_limit:g}" if mean_abs_limit else "") + f", cosine >= {cosine_limit:g}"
    )


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 2)[2]
    )
    parser.add_argument(
        "--online_path",
        default="images",
        help="the reference: folder of the online outputs <i>.bin, or another offline run (default: images)",
    )
    parser.add_argument("--offline_path", default="out", help="offline output root or run folder (default: out)")
    parser.add_argument("--tolerance", choices=sorted(TOLERANCES), default="fp32", help="tolerance preset (default: fp32)")
    parser.add_argument(
        "--diff_image",
        default="compare_first_batch.png",
        help="picture of the first batch: reference | offline | difference (default: compare_first_batch.png)",
    )
    parser.add_argument(
        "--error_plot",
        default="compare_errors.png",
        help="picture of the error against the reference's magnitude, and its histogram ('' for none; default: compare_errors.png)",
    )
    parser.add_argument(
        "--atol", type=non_negative_float, default=None, help="element-wise absolute tolerance (Polygraphy's rule; default: not checked)"
    )
    parser.add_argument(
        "--rtol", type=non_negative_float, default=None, help="element-wise relative tolerance (Polygraphy's rule; default: not checked)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the overall line and the verdict")
    parser.add_argument("--save_json", default=None, help="also save the figures and the verdict as JSON here (GAN_report.py reads it)")
    return parser


def reference_side(path):
    """(what it is, {batch index: path}, reader, run folder or None) of --online_path: GAN_testdata.py's online folder,
    or an offline run."""
    online = numbered_files(path, ".bin") if Path(path).is_dir() else {}
    if online and not list_output_files(path):
        return f"{path} (online)", online, read_online, None
    if not Path(path).is_dir():
        raise InputError(f"{path}: no such folder (expected the online outputs <i>.bin of GAN_testdata.py, or an offline run)")
    try:
        run = open_run(path)
    except InputError as err:
        raise InputError(f"{path}: neither online outputs <i>.bin (GAN_testdata.py) nor a usable offline run ({err})") from None
    return run.note, run.outputs, read_output, run.path


def pair_batches(reference_path, reference, run):
    """[(i, reference path, offline path)] for every batch on both sides, or an error naming the missing ones."""
    offline = run.outputs
    only_reference, only_offline = sorted(set(reference) - set(offline)), sorted(set(offline) - set(reference))
    if only_reference or only_offline:
        parts = []
        if only_reference:
            parts.append(f"batches {short_list(only_reference)} are in {reference_path} but missing from {run.path}")
        if only_offline:
            parts.append(f"batches {short_list(only_offline)} are in {run.path} but missing from {reference_path}")
        raise InputError("; ".join(parts))
    return [(i, reference[i], offline[i]) for i in sorted(reference)]


def cosine_of(dot, norm2_a, norm2_b):
    """Cosine similarity from a dot product and two squared norms; two all-zero sides are identical (1), one is not (0)."""
    if norm2_a > 0 and norm2_b > 0:
        return dot / float(np.sqrt(norm2_a * norm2_b))
    return 1.0 if norm2_a == norm2_b else 0.0


class Agreement:
    """Max abs error, mean abs error and cosine of one side against the other, accumulated batch by batch in float64
    (elementwise sums, not BLAS dot products: a BLAS thread pool costs more than it saves at this size). The one
    computation of these figures: GAN_compare, the export's check (GAN_pth2onnx.py) and GAN_int8_schemes.py."""

    def __init__(self):
        self.max_abs, self.abs_sum, self.count, self.dot, self.norm_a, self.norm_b = 0.0, 0.0, 0, 0.0, 0.0, 0.0

    def add(self, a, b):
        """Add one batch (float64 arrays of the same size); its own figures."""
        diff = np.abs(a - b)
        dot, norm_a, norm_b = float((a * b).sum()), float((a * a).sum()), float((b * b).sum())
        batch = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "cosine": cosine_of(dot, norm_a, norm_b)}
        self.max_abs, self.abs_sum, self.count = (
            max(self.max_abs, batch["max_abs"]),
            self.abs_sum + float(diff.sum()),
            self.count + diff.size,
        )
        self.dot, self.norm_a, self.norm_b = self.dot + dot, self.norm_a + norm_a, self.norm_b + norm_b
        return batch

    def overall(self):
        return {"max_abs": self.max_abs, "mean_abs": self.abs_sum / self.count, "cosine": cosine_of(self.dot, self.norm_a, self.norm_b)}


def save_diff_picture(online, offline, path):
    """reference | offline | |difference| magnified so that its largest value is white, 8 pixels apart, each panel
    labelled above (the factor in the third label); returns the factor."""
    from PIL import Image, ImageDraw

    diff = np.abs(online - offline)
    largest = max(float(diff.max()), 1e-12)
    panels = [grid_array(online), grid_array(offline), grid_array(diff, value_range=(0.0, largest))]
    labels = ["reference", "offline", f"|difference| x{1.0 / largest:.3g}"]
    band, gap = 16, 8
    height, width = panels[0].shape[0] + band, sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    picture = Image.new("RGB", (width, height), "white")
    draw, x = ImageDraw.Draw(picture), 0
    for panel, label in zip(panels, labels):
        picture.paste(Image.fromarray(panel), (x, band))
        draw.text((x + 2, 2), label, fill="black")
        x += panel.shape[1] + gap
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return 1.0 / largest


PLOTTED_ELEMENTS = 1 << 20


def save_error_plot(statistics, path):
    """Left: each element's absolute error against the reference's magnitude (a 2-D histogram, counts on a log scale);
    right: the histogram of the absolute error, with atol and the smallest atol that passes."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    step = max(1, -(-statistics.kept_values("abs").size // PLOTTED_ELEMENTS))  # a million points draw the same picture
    absolute = statistics.kept_values("abs")[::step].astype(np.float64)
    reference = np.abs(statistics.kept_values("ref")[::step].astype(np.float64))
    finite = np.isfinite(absolute) & np.isfinite(reference)
    absolute, reference = absolute[finite], reference[finite]
    positive = absolute[absolute > 0]
    smallest = float(positive.min()) if positive.size else 1e-12
    floor = min(smallest, statistics.atol if statistics.atol > 0 else smallest) / 10  # a row below every error and atol
    shown = np.maximum(absolute, floor)  # exact zeros drawn on that lowest row (a log axis has no zero)
    top = max(float(shown.max()) if shown.size else floor, floor * 10)
    bins = np.geomspace(floor, top, 60)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    sampled = f" (every {statistics.stride * step}th element)" if statistics.stride * step > 1 else ""
    if shown.size:
        _, _, _, image = left.hist2d(
            reference, shown, bins=[np.linspace(0, max(float(reference.max()), 1e-12), 60), bins], norm=LogNorm(), cmap="viridis"
        )
        fig.colorbar(image, ax=left, label="elements")
        right.hist(shown, bins=bins, color="tab:blue")
    left.set_yscale("log")
    left.set_xlabel("|reference|")
    left.set_ylabel(f"absolute error (exact zeros at {floor:.0e})")
    left.set_title(f"error against the reference's magnitude{sampled}", fontsize=9)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("absolute error")
    right.set_ylabel("elements")
    right.axvline(statistics.atol, color="tab:red", linestyle="--", label=f"atol {statistics.atol:g}")
    if 0 < statistics.needed_atol < np.inf:
        right.axvline(statistics.needed_atol, color="black", linestyle=":", label=f"smallest passing atol {statistics.needed_atol:.3g}")
    right.legend(fontsize=8, loc="upper right")
    right.set_title(f"{statistics.count:,} elements{sampled}, rtol {statistics.rtol:g}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def picture_record(path, save_json):
    """{path, sha256} of a picture this step drew; the path relative to the folder of --save_json, which the report
    reads it from (a workdir moves as a whole); the report shows it only while it is the same file (its sha256)."""
    base = os.path.dirname(os.path.realpath(save_json)) if save_json else os.getcwd()
    return {"path": os.path.relpath(os.path.realpath(path), base), "sha256": file_digest(path, "picture")[1]}


def describe_statistics(figures):
    """Two lines: the error statistics, and the element-wise count with the tolerances that would pass."""

    def quantiles(name):
        f = figures[name]
        return ", ".join(f"{k} {f[k]:.3g}" for k in ("max", "mean", "p50", "p90", "p99") if f[k] is not None)

    sampled = f" (quantiles over every {figures['quantiles_every']}th element)" if figures["quantiles_every"] > 1 else ""
    return [
        f"abs error: {quantiles('abs')}; rel error: {quantiles('rel')}; NaN {figures['nan']}, Inf {figures['inf']}{sampled}",
        f"element-wise (fails where abs > atol and rel > rtol), atol {figures['atol']:g}, rtol {figures['rtol']:g}: "
        f"{figures['failing']:,} of {figures['elements']:,} elements fail ({100 * figures['failing_share']:.3g}%); "
        + describe_needed(figures),
    ]


def main(args):
    started = time.perf_counter()
    max_abs_limit, cosine_limit, mean_abs_limit = TOLERANCES[args.tolerance]
    run = open_run(args.offline_path)
    reference_note, reference, read_reference, reference_run = reference_side(args.online_path)
    if reference_run is not None and os.path.realpath(reference_run) == os.path.realpath(run.path):
        raise InputError(f"{run.path}: --online_path and --offline_path are the same run: nothing to compare")
    outputs = [
        (flag, path)
        for flag, path in (("--diff_image", args.diff_image), ("--error_plot", args.error_plot), ("--save_json", args.save_json))
        if path
    ]
    if args.diff_image and args.error_plot and os.path.realpath(args.diff_image) == os.path.realpath(args.error_plot):
        raise InputError(f"{args.error_plot}: --diff_image and --error_plot name the same file")
    for flag, path in outputs:
        check_output_file(path, flag)
    refuse_overlap([("--online_path", args.online_path), ("--offline_path", args.offline_path), ("the run folder", run.path)], outputs)
    pairs = pair_batches(args.online_path, reference, run)
    run_dir = run.path
    print(f"reference: {reference_note}")
    print(f"reading {run.note}")
    agreement = Agreement()
    checked = args.atol is not None or args.rtol is not None
    statistics = ErrorStatistics(
        POLYGRAPHY_TOLERANCE if args.atol is None else args.atol, POLYGRAPHY_TOLERANCE if args.rtol is None else args.rtol
    )
    picture_note, picture, batches = "", None, []
    if not args.quiet:
        print(f"{'batch':>6} {'images':>6} {'max_abs':>10} {'mean_abs':>10} {'cosine':>10}")
    for n, (i, online_file, offline_file) in enumerate(pairs):
        online = read_reference(online_file).astype(np.float64).ravel()
        offline = read_output(offline_file).astype(np.float64).ravel()
        if online.size != offline.size:
            raise InputError(f"{offline_file}: {offline.size // IMG_SIZE} images, but {online_file} has {online.size // IMG_SIZE}")
        figures = agreement.add(online, offline)
        statistics.add(online, offline)
        batches.append({"batch": i, "images": online.size // IMG_SIZE, **figures})
        if not args.quiet:
            print(
                f"{i:>6} {online.size // IMG_SIZE:>6} {figures['max_abs']:>10.3e} {figures['mean_abs']:>10.3e} {figures['cosine']:>10.7f}"
            )
        if n == 0 and args.diff_image:
            factor = save_diff_picture(online.reshape(-1, 1, 28, 28), offline.reshape(-1, 1, 28, 28), args.diff_image)
            picture_note = f"; batch {i} pictured in {args.diff_image} (difference magnified x{factor:.3g})"
            picture = {**picture_record(args.diff_image, args.save_json), "batch": i}
    overall = agreement.overall()
    worst, mean_abs, cosine, count = overall["max_abs"], overall["mean_abs"], overall["cosine"], agreement.count
    print(
        f"overall: {len(pairs)} batches, {count // IMG_SIZE} images: max_abs {worst:.3e}, mean_abs {mean_abs:.3e}, "
        f"cosine {cosine:.7f} ({run_dir} vs {args.online_path}, {time.perf_counter() - started:.1f} s)"
    )
    elementwise = statistics.summary()
    print("\n".join(describe_statistics(elementwise)))
    error_plot = None
    if args.error_plot:
        save_error_plot(statistics, args.error_plot)
        error_plot = picture_record(args.error_plot, args.save_json)
        print(f"error against the reference's magnitude, and its histogram: {args.error_plot}")
    passed = preset_passed = judge(worst, mean_abs, cosine, TOLERANCES[args.tolerance])
    elementwise["verdict"] = ("PASS" if elementwise["failing"] == 0 else "FAIL") if checked else None
    print(f"{'PASS' if passed else 'FAIL'}: {args.tolerance} tolerance ({describe_limits(TOLERANCES[args.tolerance])})" + picture_note)
    if checked:
        print(
            f"{elementwise['verdict']}: element-wise atol {statistics.atol:g}, rtol {statistics.rtol:g} "
            f"({elementwise['failing']:,} elements fail)"
        )
        passed = passed and elementwise["verdict"] == "PASS"
    if args.save_json:
        save_step(
            args.save_json,
            "compare",
            {
                "reference": str(args.online_path),
                "reference_read": reference_note,
                "offline": str(run_dir),
                "offline_read": run.note,
                "tolerance": args.tolerance,
                "limits": {"max_abs": max_abs_limit, "mean_abs": mean_abs_limit, "cosine": cosine_limit},
                "overall": {"batches": len(pairs), "images": count // IMG_SIZE, "max_abs": worst, "mean_abs": mean_abs, "cosine": cosine},
                "verdict": "PASS" if passed else "FAIL",
                "picture": picture,
                "elementwise": elementwise,
                "error_plot": error_plot,
                "batches": batches,
            },
        )
    if not passed:  # the verdict's one line on stderr, as every failure ends
        failed = ([f"the {args.tolerance} preset"] if not preset_passed else []) + (
            [f"element-wise atol {statistics.atol:g}, rtol {statistics.rtol:g}"] if checked and elementwise["verdict"] == "FAIL" else []
        )
        raise InputError(f"{run_dir}: FAIL against {args.online_path}: {' and '.join(failed)} (figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
