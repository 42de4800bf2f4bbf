"""A run against its baseline: one verdict on what changed between two workdirs, in environment, outputs, precision,
image quality and speed, with noise told apart from change.

    python GAN_regression.py --baseline runs/good --candidate runs/new --save_json regression.json

Each folder is a workdir of run_pipeline.sh (or a folder holding the same step records and out/). One row per figure:
baseline, candidate, the change and a verdict: improved, same, worse, not comparable (with the reason), or, for the
environment, differs (listed, never judged). Exit 0 when nothing got worse, 1 when something did (or a file cannot be
used, in one line), 2 for a bad flag.

- Outputs: where both ran the same inputs (sha256 of vectors/), element by element against the fp32 preset.
- Precision: each run's figures against its own online reference; worse when the candidate fails a preset the baseline
  passed, or an error grew beyond --error_factor (changes under 1% of the preset's bound are noise of the last bits).
- Image quality: the digit classifier on both runs' outputs; the change's interval from --resamples bootstrap
  resamples of the images (each run resampled on its own), at 1 - --alpha; a change whose interval holds 0 is same.
- Speed: at every batch size in both runs; worse (improved) only when the candidate is slower (faster) by more than
  --factor on the median per-call latency AND a one-sided Mann-Whitney U test on the per-call latencies says so at
  --alpha (as asv does). Without per-call latencies (another tool's log), a change beyond --factor is not comparable.
"""

import argparse
import functools
import hashlib
import math
import sys
from pathlib import Path

import numpy as np

from gan.cli import HelpFormatter, InputError, bounded_number, check_output_file, refuse_overlap, run_main
from gan.files import file_digest, numbered_files, read_output
from gan.perf import BUSY_SHARE
from gan.records import read_step, save_step
from gan.runs import run_summary
from GAN_compare import TOLERANCES, Agreement, judge
from GAN_eval import CLASSIFIER, REFERENCE_STATS, DigitScorer, frechet_distance

FORMAT = "gan-regression/1"
FP32 = TOLERANCES["fp32"]
NOISE_SHARE = 0.01  # an error change under 1% of the preset's bound is the last bits moving, not a change
DRIFT_BLOCKS = 10  # a run's per-call latencies in this many blocks of consecutive calls: its drift is max/min of their medians


factor_above_one = bounded_number(float, lambda value: value > 1, "a factor above 1")
probability = bounded_number(float, lambda value: 0 < value < 1, "a probability in (0, 1)")
resample_count = bounded_number(int, lambda value: 20 <= value <= 100000, "a count from 20 to 100000")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--baseline", required=True, help="workdir of the last good run")
    parser.add_argument("--candidate", required=True, help="workdir of the run to judge")
    parser.add_argument("--save_json", default=None, help="also save the rows as JSON here (GAN_report.py reads it)")
    parser.add_argument(
        "--factor", type=factor_above_one, default=1.10, help="a slowdown (speed-up) beyond this factor can be worse (improved)"
    )
    parser.add_argument(
        "--alpha", type=probability, default=0.01, help="significance of the rank test; the bootstrap interval is at 1 - alpha"
    )
    parser.add_argument("--error_factor", type=factor_above_one, default=2.0, help="an error that grew beyond this factor is worse")
    parser.add_argument("--resamples", type=resample_count, default=200, help="bootstrap resamples of the images")
    parser.add_argument("--classifier", default=str(CLASSIFIER), help="digit classifier ONNX model (GAN_eval.py)")
    parser.add_argument("--reference_stats", default=str(REFERENCE_STATS), help="real images' feature statistics (GAN_eval.py)")
    return parser


# ---------------------------------------------------------------------------------------------------------
# A workdir's records, each read through its validating reader; a part that is not there is None.


class Workdir:
    def __init__(self, path, flag):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"{path}: {flag} is not a workdir (no such folder)")
        self.records = {name: self._record(name) for name in ("export.json", "testdata.json", "compare.json", "perf.json")}
        self.records["sweep.json"] = self._record("sweep/sweep.json")
        self.run, self.summary = None, None
        if (self.path / "out").exists():
            self.run, self.summary = run_summary(self.path / "out")
        if not (self.run or any(self.records.values())):
            raise InputError(f"{path}: {flag} holds no step records and no out/ (run run_pipeline.sh into it)")
        vectors = numbered_files(self.path / "vectors", ".bin") if (self.path / "vectors").is_dir() else {}
        self.inputs = [vectors[i] for i in sorted(vectors)]

    def _record(self, name):
        path = self.path / name
        return read_step(path) if path.exists() else None

    @functools.cached_property
    def inputs_digest(self):
        """`N files, sha256 <first 16>` of vectors/ (None without it): read once, however often it is compared."""
        if not self.inputs:
            return None
        digest = hashlib.sha256()
        for path in self.inputs:
            digest.update(file_digest(path, "input file")[1].encode())
        return f"{len(self.inputs)} files, sha256 {digest.hexdigest()[:16]}"

    def file_sha(self, path):
        try:
            return file_digest(path, "file", follow_links=True)[1][:16]
        except (InputError, TypeError):
            return None


def row(section, figure, baseline, candidate, verdict, reason="", change="", **extra):
    text = {
        k: "not recorded" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for k, v in (("b", baseline), ("c", candidate))
    }
    return {
        "section": section,
        "figure": figure,
        "baseline": text["b"],
        "candidate": text["c"],
        "change": change,
        "verdict": verdict,
        "reason": reason,
        **extra,
    }


def ratio_text(base, cand):
    return f"x{cand / base:.3f}" if base else ""


# ---------------------------------------------------------------------------------------------------------
# Environment and inputs: listed, never judged.


def environment_rows(base, cand):
    def facts(work):
        summary, testdata, export = work.summary or {}, work.records["testdata.json"] or {}, work.records["export.json"] or {}
        cpu = summary.get("cpu") or export.get("cpu")
        versions = {**(export.get("versions") or {}), **(summary.get("versions") or {})}
        found = {
            "CPU": cpu and cpu["model"],
            "instruction sets": cpu and " ".join(cpu["isa"]),
            "cores": cpu and cpu["cores"],
            "offline tool": summary.get("tool", "").split(":")[0] or (work.run and work.run.manifest.get("tool")),
            "threads": summary.get("threads", "").split(" (")[0] or None,
            **{f"version of {name}": versions.get(name) for name in ("python", "torch", "onnxruntime", "onnx", "numpy")},
            "sha256 of the weights": testdata.get("pth_path") and work.file_sha(testdata["pth_path"]),
            "sha256 of GAN.onnx": work.file_sha(work.path / "GAN.onnx"),
            "workload (batches x batch size)": testdata and f"{testdata['iters']} x {testdata['batch_size']}",
            "seed": testdata.get("seed"),
            "inputs (vectors/)": work.inputs_digest,
            "CPU waits while timed": busy_text(summary.get("load")),
        }
        return found

    b, c = facts(base), facts(cand)
    return [row("environment", name, b[name], c[name], "same" if b[name] == c[name] else "differs") for name in b]


def wait_share(summary):
    return ((summary or {}).get("load") or {}).get("cpu_wait_share")


def busy_text(load):
    share = (load or {}).get("cpu_wait_share")
    return None if share is None else f"{share:.1%} of the time" + (" (busy)" if share > BUSY_SHARE else "")


# ---------------------------------------------------------------------------------------------------------
# Outputs, element by element.


def output_rows(base, cand):
    if not (base.run and cand.run):
        return [
            row(
                "outputs",
                "offline outputs",
                base.run and base.run.path.name,
                cand.run and cand.run.path.name,
                "not comparable",
                "a run is missing",
            )
        ]
    if base.inputs_digest is None or base.inputs_digest != cand.inputs_digest:
        return [
            row("outputs", "offline outputs", base.inputs_digest, cand.inputs_digest, "not comparable", "the runs had different inputs")
        ]
    if sorted(base.run.outputs) != sorted(cand.run.outputs):
        return [row("outputs", "offline outputs", len(base.run.outputs), len(cand.run.outputs), "not comparable", "different output files")]
    agreement, identical, total = Agreement(), 0, 0
    for index in sorted(base.run.outputs):
        a = read_output(base.run.outputs[index]).astype(np.float64)
        b = read_output(cand.run.outputs[index]).astype(np.float64)
        if a.shape != b.shape:
            return [row("outputs", f"output {index}", a.shape, b.shape, "not comparable", "different shapes")]
        agreement.add(a, b)
        identical += int(np.count_nonzero(a == b))
        total += a.size
    overall = agreement.overall()
    passes = judge(overall["max_abs"], overall["mean_abs"], overall["cosine"], FP32)
    verdict = "same" if passes else "worse"
    reason = "within the fp32 preset of each other" if passes else "beyond the fp32 preset of each other (max abs 1e-4, cosine 0.99999)"
    figures = f"max abs {overall['max_abs']:.3g}, mean abs {overall['mean_abs']:.3g}, cosine {overall['cosine']:.9f}"
    return [
        row("outputs", "bit-identical elements", f"{total:,}", f"{identical:,} ({identical / total:.2%})", verdict, reason, figures),
    ]


# ---------------------------------------------------------------------------------------------------------
# Precision against each run's own online reference.


def precision_rows(base, cand, error_factor):
    b, c = base.records["compare.json"], cand.records["compare.json"]
    if not (b and c):
        return [row("precision", "against online", b and b["verdict"], c and c["verdict"], "not comparable", "compare.json is missing")]
    limits = TOLERANCES.get(b["tolerance"], FP32)
    rows = []
    for name, bound in (("max_abs", limits[0]), ("mean_abs", limits[2] or limits[0]), ("cosine", 1 - limits[1])):
        bv, cv = b["overall"][name], c["overall"][name]
        be, ce = (1 - bv, 1 - cv) if name == "cosine" else (bv, cv)  # errors: larger is worse
        floor = NOISE_SHARE * bound
        if ce > max(be * error_factor, floor):
            verdict, reason = "worse", f"the error grew beyond x{error_factor:g} (and above {floor:.2g}, 1% of the preset's bound)"
        elif be > max(ce * error_factor, floor):
            verdict, reason = "improved", f"the error shrank beyond x{error_factor:g}"
        else:
            verdict, reason = "same", f"within x{error_factor:g}, or both under {floor:.2g} (1% of the preset's bound)"
        rows.append(
            row(
                "precision",
                f"{name} against online",
                bv,
                cv,
                verdict,
                reason,
                ratio_text(be, ce) if name != "cosine" else f"{cv - bv:+.3g}",
            )
        )
    preset = f"{b['tolerance']} preset" + ("" if b["tolerance"] == c["tolerance"] else f" / {c['tolerance']} preset")
    verdict = {("PASS", "FAIL"): "worse", ("FAIL", "PASS"): "improved"}.get((b["verdict"], c["verdict"]), "same")
    rows.append(
        row(
            "precision",
            preset,
            b["verdict"],
            c["verdict"],
            verdict,
            "the candidate fails a preset the baseline passed" if verdict == "worse" else "",
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------------------
# Image quality, with bootstrap intervals of the change.

QUALITY = (("confidence", +1), ("inception_score", +1), ("fid", -1), ("min_digit_share", +1))  # name, which way is better


def quality_of(probs, feats, weights, scorer):
    """The four figures of GAN_eval.py for images counted `weights` times (a bootstrap resample)."""
    n = weights.sum()
    marginal = weights @ probs / n
    kl = (probs * (np.log(np.clip(probs, 1e-12, None)) - np.log(np.clip(marginal, 1e-12, None)))).sum(axis=1)
    mu = weights @ feats / n
    cov = ((feats * weights[:, None]).T @ feats - n * np.outer(mu, mu)) / max(n - 1, 1)
    votes = np.bincount(probs.argmax(axis=1), weights=weights, minlength=10)
    return {
        "confidence": float(weights @ probs.max(axis=1) / n),
        "inception_score": float(np.exp(weights @ kl / n)),
        "fid": frechet_distance(mu, cov, scorer.ref_mu, scorer.ref_cov),
        "min_digit_share": float(votes.min() / n),
    }


def quality_rows(base, cand, scorer, resamples, alpha):
    if not (base.run and cand.run):
        return [row("image quality", "digit classifier", None, None, "not comparable", "a run is missing")]
    scored = []
    for work in (base, cand):
        images = np.concatenate([read_output(work.run.outputs[i]) for i in sorted(work.run.outputs)]).reshape(-1, 1, 28, 28)
        scored.append(scorer.features(images))
    rng = np.random.default_rng(0)
    figures = [quality_of(p, f, np.ones(len(p)), scorer) for p, f in scored]
    draws = {name: [] for name, _ in QUALITY}
    for _ in range(resamples):
        sides = [quality_of(p, f, np.bincount(rng.integers(0, len(p), len(p)), minlength=len(p)).astype(float), scorer) for p, f in scored]
        for name, _ in QUALITY:
            draws[name].append(sides[1][name] - sides[0][name])
    rows = []
    for name, better in QUALITY:
        low, high = np.quantile(draws[name], [alpha / 2, 1 - alpha / 2])
        change = figures[1][name] - figures[0][name]
        interval = f"{change:+.4g} [{low:+.4g}, {high:+.4g}]"
        if low <= 0 <= high or change == 0:
            verdict, reason = "same", f"the {1 - alpha:.0%} interval of the change holds 0"
        else:
            verdict = "improved" if (change > 0) == (better > 0) else "worse"
            reason = f"the {1 - alpha:.0%} interval of the change ({resamples} bootstrap resamples) excludes 0"
        rows.append(
            row(
                "image quality",
                name,
                round(figures[0][name], 4),
                round(figures[1][name], 4),
                verdict,
                reason,
                interval,
                interval=[float(low), float(high)],
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------------
# Speed.


def mann_whitney_greater(x, y):
    """One-sided p-value that x is stochastically greater than y: Mann-Whitney U, normal approximation with the tie
    correction and a continuity correction (scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic"))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    both = np.concatenate([x, y])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    sorted_values = both[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(both)]
    ties = ends - starts
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ties)  # average ranks, 1-based
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - (ties**3 - ties).sum() / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return 0.5 * math.erfc(z / math.sqrt(2))


def drift(times):
    """How far a run's speed moved while it ran: max over min of the medians of DRIFT_BLOCKS blocks of consecutive
    calls (None under 2 calls a block). A machine that drifts by more than the factor within one run cannot tell a
    change of that size between two runs from its own noise (measured here: x1.13 to x1.43 within runs on a shared
    2-core VM whose pressure counters showed 1% CPU waits)."""
    if len(times) < 2 * DRIFT_BLOCKS:
        return None
    medians = [float(np.median(block)) for block in np.array_split(np.asarray(times, float), DRIFT_BLOCKS)]
    return max(medians) / min(medians) if min(medians) > 0 else None


def speed_verdict(base_value, cand_value, factor, slower_p, faster_p, alpha, larger_is_faster=False, noisy=None):
    slowdown = (base_value / cand_value) if larger_is_faster else (cand_value / base_value)
    beyond = (slowdown > factor and slower_p < alpha) or (1 / slowdown > factor and faster_p < alpha)
    if beyond and noisy:
        return (
            "not comparable",
            f"{noisy}: a change of x{slowdown:.2f} cannot be told from the machine's noise (rerun on a quieter machine, or judge with a larger --factor)",
        )
    if slowdown > factor and slower_p < alpha:
        return "worse", f"slower by more than x{factor:g}, and the rank test says so (p = {slower_p:.2g} < {alpha:g})"
    if 1 / slowdown > factor and faster_p < alpha:
        return "improved", f"faster by more than x{factor:g}, and the rank test says so (p = {faster_p:.2g} < {alpha:g})"
    if slowdown > factor or 1 / slowdown > factor:
        return "same", f"beyond x{factor:g}, but the rank test does not tell it from noise (p = {min(slower_p, faster_p):.2g})"
    return "same", f"within x{factor:g}"


def speed_rows(base, cand, factor, alpha):
    rows = []
    bs, cs = base.summary, cand.summary
    if bs and cs and bs["batchsize"] == cs["batchsize"] and bs.get("npu_compute_time_list") and cs.get("npu_compute_time_list"):
        b_times, c_times = bs["npu_compute_time_list"], cs["npu_compute_time_list"]
        slower_p, faster_p = mann_whitney_greater(c_times, b_times), mann_whitney_greater(b_times, c_times)
        batch = int(bs["batchsize"])
        tested = {"p_slower": slower_p, "p_faster": faster_p, "calls": [len(b_times), len(c_times)]}
        noisy = [
            f"the {side}'s tasks waited for a CPU {share:.0%} of the time"
            for side, share in (("baseline", wait_share(bs)), ("candidate", wait_share(cs)))
            if share is not None and share > BUSY_SHARE
        ]
        drifts = [drift(b_times), drift(c_times)]
        for side, times, moved in (("baseline", b_times, drifts[0]), ("candidate", c_times, drifts[1])):
            if moved is None:
                noisy.append(f"the {side} has {len(times)} calls, too few to measure its drift ({2 * DRIFT_BLOCKS} at least)")
            elif moved > factor:
                noisy.append(f"the {side}'s speed drifted x{moved:.2f} within the run, more than x{factor:g}")
        tested["drift"] = [d or 0.0 for d in drifts]
        for figure, b_value, c_value, faster_larger in (
            ("p50 latency (ms)", float(np.median(b_times)), float(np.median(c_times)), False),
            ("mean latency (ms)", float(np.mean(b_times)), float(np.mean(c_times)), False),
            ("images/s", bs["throughput"], cs["throughput"], True),
        ):
            verdict, reason = speed_verdict(b_value, c_value, factor, slower_p, faster_p, alpha, faster_larger, " and ".join(noisy))
            rows.append(row("speed", f"{figure}, batch {batch}", b_value, c_value, verdict, reason, ratio_text(b_value, c_value), **tested))
    else:
        rows.append(
            row(
                "speed",
                "per-call latencies of the runner",
                bs and bs["batchsize"],
                cs and cs["batchsize"],
                "not comparable",
                "no runner's summary with per-call latencies at one batch size in both",
            )
        )
    b_logs = {(log["tool"], log["batch_size"]): log for log in (base.records["perf.json"] or {}).get("logs", [])}
    c_logs = {(log["tool"], log["batch_size"]): log for log in (cand.records["perf.json"] or {}).get("logs", [])}
    for key in sorted(set(b_logs) & set(c_logs)):
        if key[0] == "onnxruntime" and "calls" in rows[0]:
            continue  # the runner's own log: judged above, on its per-call latencies
        rows.append(log_row(f"images/s of {key[0]}'s log, batch {key[1]}", b_logs[key]["fps"], c_logs[key]["fps"], factor, "a log"))
    b_sweep = {r["batch_size"]: r for r in (base.records["sweep.json"] or {}).get("rows", [])}
    c_sweep = {r["batch_size"]: r for r in (cand.records["sweep.json"] or {}).get("rows", [])}
    for batch in sorted(set(b_sweep) & set(c_sweep)):
        b_fps, c_fps = b_sweep[batch]["images_per_s_per_card"], c_sweep[batch]["images_per_s_per_card"]
        rows.append(log_row(f"images/s of the sweep, batch {batch}", b_fps, c_fps, factor, "a sweep"))
    return rows


def log_row(figure, b_fps, c_fps, factor, what):
    """A figure with no per-call latencies beside it: within the factor it is the same; beyond it, not comparable."""
    beyond = max(b_fps / c_fps, c_fps / b_fps) > factor if b_fps and c_fps else True
    reason = f"beyond x{factor:g}, but {what} holds no per-call latencies to tell change from noise" if beyond else f"within x{factor:g}"
    return row("speed", figure, b_fps, c_fps, "not comparable" if beyond else "same", reason, ratio_text(b_fps, c_fps))


# ---------------------------------------------------------------------------------------------------------


def main(args):
    if args.save_json:
        check_output_file(args.save_json, "--save_json")
        refuse_overlap([("--baseline", args.baseline)], [("--save_json", args.save_json)])
        inside = Path(args.candidate).resolve() in Path(args.save_json).resolve().parents
        if inside and Path(args.save_json).name != "regression.json":  # the candidate's own records are inputs here
            raise InputError(f"{args.save_json}: inside the --candidate workdir only regression.json is written (its other files are read)")
    base, cand = Workdir(args.baseline, "--baseline"), Workdir(args.candidate, "--candidate")
    scorer = DigitScorer(args.classifier, args.reference_stats)
    rows = (
        environment_rows(base, cand)
        + output_rows(base, cand)
        + precision_rows(base, cand, args.error_factor)
        + quality_rows(base, cand, scorer, args.resamples, args.alpha)
        + speed_rows(base, cand, args.factor, args.alpha)
    )
    worse = [r for r in rows if r["verdict"] == "worse"]
    record = {
        "format": FORMAT,
        "baseline": str(base.path),
        "candidate": str(cand.path),
        "factor": args.factor,
        "alpha": args.alpha,
        "error_factor": args.error_factor,
        "resamples": args.resamples,
        "rows": rows,
        "worse": len(worse),
        "verdict": "worse" if worse else "nothing worse",
    }
    if args.save_json:
        save_step(args.save_json, "regression", record)
    widths = [
        max(
            len(r[k])
            for r in rows
            + [{"figure": "figure", "baseline": "baseline", "candidate": "candidate", "change": "change", "verdict": "verdict"}]
        )
        for k in ("figure", "baseline", "candidate", "change", "verdict")
    ]
    section = None
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"== {section}")
        cells = [r[k].ljust(w) for k, w in zip(("figure", "baseline", "candidate", "change", "verdict"), widths)]
        print("  " + "  ".join(cells) + (f"  {r['reason']}" if r["reason"] and r["section"] != "environment" else ""))
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("worse", "improved", "same", "not comparable", "differs")}
    print(f"verdict: {record['verdict']} ({', '.join(f'{n} {v}' for v, n in counts.items() if n)}) of {cand.path} against {base.path}")
    if worse:  # the one line of a failure: which figures
        names = ", ".join(f"{r['section']}: {r['figure']}" for r in worse[:4]) + (f" and {len(worse) - 4} more" if len(worse) > 4 else "")
        raise InputError(f"{cand.path}: {len(worse)} figure(s) worse than the baseline {base.path}: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
