"""Precision check (the guide's section 6.2): offline outputs against the online PyTorch outputs of the same latents.

    python GAN_compare.py --online_path=images --offline_path=out

Pairs every online images/<i>.bin with offline output i (msame or ais_bench naming; TXT, BIN or NPY; the
newest run under --offline_path, refused if it is not complete; gan/runs.py), prints per-batch and overall max absolute error, mean absolute
error and cosine similarity, then one PASS/FAIL line against the tolerance preset:
  fp32  max abs <= 1e-4, cosine >= 0.99999  (ONNX Runtime, or an .om built with --precision_mode must_keep_origin_dtype)
  fp16  max abs <= 5e-2, mean abs <= 1e-3, cosine >= 0.9999  (an .om built with atc's default force_fp16)
  int8  max abs <= 1.0, mean abs <= 1e-2, cosine >= 0.999  (GAN_pth2onnx.py --quantize int8 on ONNX Runtime)
Exits 1 on FAIL, when a batch is missing on either side, or when either side holds NaN or Inf.
--online_path may also be an offline run (an output root or a run folder): one run is then checked
against another, for example an NPU run against the ONNX Runtime run, or the fp16 preview against the NPU.
Also saves a picture of the first batch:
reference | offline | |difference| magnified until its largest value is white. Needs numpy and Pillow only.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from gan.cli import HelpFormatter, InputError, check_output_file, refuse_overlap, run_main, short_list
from gan.files import IMG_SIZE, atomic_path, file_digest, grid_array, numbered_files, read_online, read_output
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
    """reference | offline | |difference| magnified so that its largest value is white, 8 pixels apart; returns the factor."""
    from PIL import Image

    diff = np.abs(online - offline)
    largest = max(float(diff.max()), 1e-12)
    panels = [grid_array(online), grid_array(offline), grid_array(diff, value_range=(0.0, largest))]
    gap = np.zeros((panels[0].shape[0], 8, 3), np.uint8)
    picture = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return 1.0 / largest


def main(args):
    started = time.perf_counter()
    max_abs_limit, cosine_limit, mean_abs_limit = TOLERANCES[args.tolerance]
    run = open_run(args.offline_path)
    reference_note, reference, read_reference, reference_run = reference_side(args.online_path)
    if reference_run is not None and os.path.realpath(reference_run) == os.path.realpath(run.path):
        raise InputError(f"{run.path}: --online_path and --offline_path are the same run: nothing to compare")
    outputs = [(flag, path) for flag, path in (("--diff_image", args.diff_image), ("--save_json", args.save_json)) if path]
    for flag, path in outputs:
        check_output_file(path, flag)
    refuse_overlap([("--online_path", args.online_path), ("--offline_path", args.offline_path), ("the run folder", run.path)], outputs)
    pairs = pair_batches(args.online_path, reference, run)
    run_dir = run.path
    print(f"reference: {reference_note}")
    print(f"reading {run.note}")
    agreement = Agreement()
    picture_note, picture, batches = "", None, []
    if not args.quiet:
        print(f"{'batch':>6} {'images':>6} {'max_abs':>10} {'mean_abs':>10} {'cosine':>10}")
    for n, (i, online_file, offline_file) in enumerate(pairs):
        online = read_reference(online_file).astype(np.float64).ravel()
        offline = read_output(offline_file).astype(np.float64).ravel()
        if online.size != offline.size:
            raise InputError(f"{offline_file}: {offline.size // IMG_SIZE} images, but {online_file} has {online.size // IMG_SIZE}")
        figures = agreement.add(online, offline)
        batches.append({"batch": i, "images": online.size // IMG_SIZE, **figures})
        if not args.quiet:
            print(
                f"{i:>6} {online.size // IMG_SIZE:>6} {figures['max_abs']:>10.3e} {figures['mean_abs']:>10.3e} {figures['cosine']:>10.7f}"
            )
        if n == 0 and args.diff_image:
            factor = save_diff_picture(online.reshape(-1, 1, 28, 28), offline.reshape(-1, 1, 28, 28), args.diff_image)
            picture_note = f"; batch {i} pictured in {args.diff_image} (difference magnified x{factor:.3g})"
            # the report shows this picture beside these figures only while it is the same file (its sha256)
            # its path is relative to the folder of --save_json, which the report reads it from (a workdir moves as a whole)
            base = os.path.dirname(os.path.realpath(args.save_json)) if args.save_json else os.getcwd()
            picture = {
                "path": os.path.relpath(os.path.realpath(args.diff_image), base),
                "sha256": file_digest(args.diff_image, "picture")[1],
                "batch": i,
            }
    overall = agreement.overall()
    worst, mean_abs, cosine, count = overall["max_abs"], overall["mean_abs"], overall["cosine"], agreement.count
    print(
        f"overall: {len(pairs)} batches, {count // IMG_SIZE} images: max_abs {worst:.3e}, mean_abs {mean_abs:.3e}, "
        f"cosine {cosine:.7f} ({run_dir} vs {args.online_path}, {time.perf_counter() - started:.1f} s)"
    )
    passed = judge(worst, mean_abs, cosine, TOLERANCES[args.tolerance])
    print(f"{'PASS' if passed else 'FAIL'}: {args.tolerance} tolerance ({describe_limits(TOLERANCES[args.tolerance])})" + picture_note)
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
                "batches": batches,
            },
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
