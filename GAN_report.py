"""One page per run: report.html (self-contained) and report.md (a ModelZoo README's layout) from a workdir.

    python GAN_report.py --workdir runs/20261126_101500

run_pipeline.sh calls it last; it also reads a workdir filled by hand with the README's commands. It
computes none of the steps' figures again: it reads what they saved, through the project's validating
readers (gan/records.py): steps.tsv (run_pipeline.sh: each step's command, status, wall time, peak memory),
export.json, testdata.json, compare.json, eval.json and perf.json (each step's --save_json), the runner's
summary beside the newest complete run under out/, sweep/sweep.json (perf_sweep.py, optional), and the
pictures images/<i>.jpg, genimg/<i>.jpg, the picture compare.json names and the plot sweep.json names.

A report is safe to share: every text that comes from the run (paths, commands, notes) is escaped in both
files (HTML, Markdown's own characters, table pipes; code spans fenced with enough backticks), and every
table renders as a table. A picture is embedded (HTML) or linked (Markdown) only if it is a regular file
inside the workdir, reached through no symbolic link, that decodes as the kind its name claims, and, for
a step's own picture, still the file that step drew (its sha256); anything else is stated as refused. A
part whose file is absent is stated as missing (a sweep, which is optional, as not run); a file of the
wrong shape is stated as invalid, with the reason. A workdir with nothing of any step is refused.
report.html embeds its pictures and needs no network and no JavaScript; report.md links them.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below

import argparse
import base64
import hashlib
import html
import io
import os
import platform
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote

from gan.cli import HelpFormatter, InputError, check_output_file, run_main
from gan.files import file_digest, read_regular, write_bytes_atomic
from gan.perf import REFERENCE_SERIES, describe_cpu, describe_load, describe_spread, versions
from gan.records import read_regression, read_step, read_steps
from gan.runs import beside_run, run_summary

GRIDS_SHOWN = 3  # online and offline grids of the first batches, side by side
MAX_PICTURE_BYTES = 32 * 1024 * 1024
GUIDE_TABLE = [
    ("msame, Ascend 310 card (4 chips), guide", 1, 0.43, 9302.326),
    ("msame, Ascend 310 card (4 chips), guide", 16, 0.47, 136170.213),
    ("trtexec --fp16, NVIDIA T4, guide", 1, 0.0826078, 12105.394),
    ("trtexec --fp16, NVIDIA T4, guide", 16, 0.0887248, 180332.895),
]
STEP_FILES = ("export.json", "testdata.json", "compare.json", "eval.json", "perf.json")


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--workdir", required=True, help="the folder run_pipeline.sh (or the README's commands) filled")
    return parser


# ---------------------------------------------------------------------------------------------------------
# One number format per kind of figure, in every table.


def ms(value):
    return "-" if value is None else f"{value:.4f}"


def per_s(value):
    return f"{value:,.1f}"


def error(value):
    return f"{value:.3e}"


def cosine(value):
    return f"{value:.7f}"


# ---------------------------------------------------------------------------------------------------------
# What the steps saved: (value, None), or (None, a block saying why not).


class Code(str):
    """Text shown as typed (a command, a path): a code span in Markdown, <code> in HTML."""


def part(workdir, name, reader=read_step, optional=False, how=""):
    path = workdir / name
    if not os.path.lexists(path):
        return None, ("not_run" if optional else "missing", [f"{name} is {'not in this workdir' if optional else 'missing'}", how])
    try:
        return reader(path), None
    except InputError as err:
        return None, ("invalid", [f"{name} cannot be used: {err}"])


def picture(workdir, relative, caption, sha256=None):
    """("pictures", [(caption, relative path, bytes, kind)]) for a picture that may be shown, else a "refused" block."""
    shown = Code(relative)
    if relative_inside(workdir, relative) is None:
        return ("refused", ["picture ", shown, " lies outside the workdir: not embedded"])
    path = os.path.normpath(os.path.join(os.path.realpath(workdir), relative))
    if os.path.realpath(path) != path:
        return ("refused", ["picture ", shown, " is reached through a symbolic link: not embedded"])
    kind = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(path).suffix.lower())
    try:
        data = read_regular(path, "picture", MAX_PICTURE_BYTES, follow_links=False)
    except InputError as err:
        return ("refused", ["picture ", shown, f" not embedded: {str(err).split(': ', 1)[-1]}"])
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            decoded = image.format
            image.verify()
    except Exception:  # noqa: BLE001 - Pillow raises many types on a file that is not a picture
        decoded = None
    if kind is None or decoded != kind:
        return ("refused", ["picture ", shown, f" does not decode as the {kind or 'picture'} its name claims: not embedded"])
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:  # the bytes just checked, not a second read
        return ("refused", ["picture ", shown, " is not the one its step drew (sha256 differs: replaced since): not shown"])
    return ("pictures", [(caption, relative, data, kind)])


def relative_inside(workdir, path):
    """`path` relative to the workdir's real path, or None when it lies outside."""
    root = os.path.realpath(workdir)
    full = os.path.normpath(os.path.join(root, path))
    return os.path.relpath(full, root) if os.path.commonpath([full, root]) == root else None


# ---------------------------------------------------------------------------------------------------------
# The report as blocks: ("h1"|"h2"|"h3", zh, en), ("p" | "missing" | "invalid" | "not_run" | "refused", [segments]),
# ("table", header, rows), ("pictures", [(caption, path, bytes, kind)]), ("details", summary, block).
# A segment or cell is text (escaped on output) or Code.


def section_run(steps, problem):
    blocks = [("h2", "运行步骤", "What was run")]
    if problem:
        return blocks + [problem]
    rows = [[s["step"], Code(s["command"].strip()), s["status"], f"{s['seconds']:.2f}", s["peak_mb"] or "-"] for s in steps]
    total = sum(s["seconds"] for s in steps)
    return blocks + [
        ("table", ["步骤 Step", "命令 Command", "状态 Status", "耗时 Wall time (s)", "峰值内存 Peak memory (MB)"], rows),
        ("p", [f"Total of the steps above: {total:.2f} s (this report is the step after them)."]),
    ]


def section_environment(workdir, testdata, export, summary):
    weights = (testdata or {}).get("pth_path") or (export or {}).get("input_file")
    vectors = workdir / "vectors"
    inputs = sorted(vectors.glob("*.bin"), key=lambda p: (len(p.name), p.name)) if vectors.is_dir() else []
    cpu = (summary or {}).get("cpu")
    rows = [
        ["CPU (offline step)" if cpu else "CPU (this report)", describe_cpu(cpu)],
        ["OS", platform.platform()],
        ["Python", platform.python_version()],
        *[[name, version] for name, version in versions("torch", "onnxruntime", "onnx", "numpy", "Pillow").items() if name != "python"],
    ]
    if testdata:
        rows += [["seed", testdata["seed"]], ["batches x batch size", f"{testdata['iters']} x {testdata['batch_size']}"]]
    for label, path in (("weights", weights), ("ONNX model", workdir / "GAN.onnx"), ("first input file", inputs[0] if inputs else None)):
        try:
            rows.append([f"sha256 of {label}", Code(f"{Path(path).name}: {file_digest(path, label, follow_links=True)[1]}")])
        except (InputError, TypeError):
            rows.append([f"sha256 of {label}", "missing" if path is None else Code(f"missing: {path}")])
    return [("h2", "推理环境", "Environment"), ("table", ["项目 Item", "值 Value"], rows)]


def section_precision(workdir, export, export_problem, compare, compare_problem):
    blocks = [("h2", "精度", "Precision")]
    if export:
        rows = [
            [
                Code(Path(model).name),
                check["kind"],
                *(error(check["max_abs_by_batch"][b]) if b in check["max_abs_by_batch"] else "-" for b in ("1", "16", "64")),
            ]
            for model, check in export["models"].items()
        ]
        blocks += [
            ("h3", "导出检查", "Export check: ONNX Runtime against PyTorch"),
            ("table", ["模型 Model", "类型 Kind", "batch 1 max abs", "batch 16 max abs", "batch 64 max abs"], rows),
        ]
    else:
        blocks.append(export_problem)
    blocks.append(("h3", "离线与在线对比", "Offline against online, GAN_compare.py"))
    if not compare:
        return blocks + [compare_problem]
    o, limits = compare["overall"], compare["limits"]
    bounds = (
        f"max abs <= {limits['max_abs']:g}"
        + (f", mean abs <= {limits['mean_abs']:g}" if limits.get("mean_abs") else "")
        + f", cosine >= {limits['cosine']:g}"
    )
    blocks += [
        (
            "table",
            ["批次 Batches", "图片 Images", "最大绝对误差 Max abs", "平均绝对误差 Mean abs", "余弦相似度 Cosine", "结论 Verdict"],
            [
                [
                    o["batches"],
                    o["images"],
                    error(o["max_abs"]),
                    error(o["mean_abs"]),
                    cosine(o["cosine"]),
                    f"{compare['verdict']} ({compare['tolerance']}: {bounds})",
                ]
            ],
        ),
        ("p", ["Reference: ", Code(compare["reference_read"]), ". Offline: ", Code(compare["offline_read"]), "."]),
        (
            "details",
            f"Every batch ({len(compare['batches'])})",
            (
                "table",
                ["batch", "images", "max abs", "mean abs", "cosine"],
                [[b["batch"], b["images"], error(b["max_abs"]), error(b["mean_abs"]), cosine(b["cosine"])] for b in compare["batches"]],
            ),
        ),
    ]
    elementwise = compare.get("elementwise")
    if elementwise:  # Polygraphy's element-wise figures: fails where abs > atol and rel > rtol

        def figure(value):
            return "-" if value is None else f"{value:.3g}"

        a, r = elementwise["abs"], elementwise["rel"]
        blocks.append((
            "table",
            ["逐元素 Element-wise", "失败 Failing", "abs p50 / p99 / max", "rel p50 / p99 / max", "可通过 Would pass with", "结论 Verdict"],
            [[
                f"atol {elementwise['atol']:g}, rtol {elementwise['rtol']:g}",
                f"{elementwise['failing']:,} of {elementwise['elements']:,} ({100 * elementwise['failing_share']:.3g}%)",
                " / ".join(figure(a[k]) for k in ("p50", "p99", "max")),
                " / ".join(figure(r[k]) for k in ("p50", "p99", "max")),
                f"atol >= {figure(elementwise['needed_atol'])} or rtol >= {figure(elementwise['needed_rtol'])}",
                elementwise["verdict"] or "not judged (no --atol / --rtol)",
            ]],
        ))  # fmt: skip
    shown, plot = compare["picture"], compare.get("error_plot")
    if plot is not None:
        caption = "each element's absolute error against the reference's magnitude, and the histogram of the error"
        blocks.append(picture(workdir, plot["path"], caption, plot["sha256"]))
    if shown is None:
        return blocks + [("p", ["This comparison drew no difference picture (--diff_image '')."])]
    inside = relative_inside(workdir, shown["path"])
    if inside is None:
        return blocks + [("refused", ["the difference picture ", Code(shown["path"]), " lies outside the workdir: not embedded"])]
    caption = f"batch {shown['batch']}: reference | offline | difference, magnified until its largest value is white"
    return blocks + [picture(workdir, inside, caption, shown["sha256"])]


def section_quality(evaluation, problem):
    blocks = [("h2", "图像质量", "Image quality, GAN_eval.py")]
    if not evaluation:
        return blocks + [problem]
    rows = [
        [
            Code(r["source"]),
            r["images"],
            f"{r['confidence']:.4f}",
            f"{r['inception_score']:.3f}",
            f"{r['fid']:.3f}",
            f"{r['min_digit_share']:.1%}",
            " ".join(f"{s * 100:.1f}" for s in r["digit_shares"]),
            "met" if r["targets_met"] else "NOT met",
        ]
        for r in evaluation["rows"]
    ]
    t = evaluation["targets"]
    header = ["样本 Samples", "图片 Images", "置信度 Confidence", "IS analogue", "Frechet distance", "最少数字 Rarest digit"]
    return blocks + [
        ("table", [*header, "数字占比 Digit shares 0..9 (%)", "目标 Targets"], rows),
        (
            "p",
            [
                f"Targets: confidence >= {t['confidence']}, IS analogue >= {t['inception_score']}, every digit >= {t['min_digit_share']:.0%}."
            ],
        ),
    ]


def section_baseline(regression, problem):
    """GAN_regression.py's rows (run_pipeline.sh --baseline): every figure that is not the same, and the count of those that are."""
    blocks = [("h2", "对比基线", "Against the baseline")]
    if problem:
        return blocks + [problem]
    shown = [r for r in regression["rows"] if r["verdict"] != "same"]
    rows = [[r["section"], r["figure"], r["baseline"], r["candidate"], r["change"], r["verdict"], r["reason"]] for r in shown]
    same = len(regression["rows"]) - len(shown)
    blocks.append(
        ("p", ["Against ", Code(regression["baseline"]), f": {regression['verdict']} ({regression['worse']} worse; {same} figures the same, not listed). "
               f"Speed: worse only beyond x{regression['factor']:g} and at p < {regression['alpha']:g} (one-sided Mann-Whitney U on the per-call latencies); "
               f"image quality: {1 - regression['alpha']:.0%} bootstrap intervals ({regression['resamples']} resamples)."])
    )  # fmt: skip
    if rows:
        header = ["部分 Part", "数字 Figure", "基线 Baseline", "本次 This run", "变化 Change", "结论 Verdict", "原因 Why"]
        blocks.append(("table", header, rows))
    return blocks


def section_pictures(workdir):
    blocks = [("h2", "在线与离线图片", "Online and offline images")]
    pairs = [(f"images/{i}.jpg", f"genimg/{i}.jpg") for i in range(GRIDS_SHOWN) if os.path.lexists(workdir / "images" / f"{i}.jpg")]
    if not pairs:
        return blocks + [("missing", ["images/<i>.jpg are missing (GAN_testdata.py)"])]
    for online, offline in pairs:
        shown = [picture(workdir, online, f"online (PyTorch) {online}")]
        if os.path.lexists(workdir / offline):
            shown.append(picture(workdir, offline, f"offline {offline}"))
        else:
            shown.append(("missing", [f"{offline} is missing (GAN_txt2jpg.py)"]))
        figures = [f for kind, figs in (b for b in shown if b[0] == "pictures") for f in figs]
        if figures:
            blocks.append(("pictures", figures))
        blocks += [b for b in shown if b[0] != "pictures"]
    return blocks


def measurement_state(summary):
    """Beside the latency table: its spread, the machine's state while timed, the cold start, and any warning."""
    words = [f"Spread: {describe_spread(summary['spread'])}." if "spread" in summary else "Spread: not recorded (an older run)."]
    if summary.get("load"):
        words.append(f"Machine while timed: {describe_load(summary['load'])}.")
    cold = summary.get("cold_start")
    if cold:
        words.append(
            f"Cold start: session made in {cold['session_ms']:.1f} ms, first inference {cold['first_inference_ms']:.3f} ms "
            f"on {cold['first_inference_rows']:,} row(s) (excluded from every figure)."
        )
    if summary.get("unstable"):
        words.append(f"Unstable: {'; '.join(summary['unstable'])}.")
    return " ".join(words)


def section_performance(workdir, perf, perf_problem, summary, summary_problem, sweep, sweep_problem):
    blocks = [("h2", "性能", "Performance"), ("h3", "离线推理时延", "Offline step: latency distribution")]
    if summary:
        s = summary["NPU_compute_time"]
        header = ["min (ms)", "max (ms)", "mean (ms)", "median (ms)", "p99 (ms)", "calls", "images/s per worker", "warm-up", "loop"]
        row = [ms(s["min"]), ms(s["max"]), ms(s["mean"]), ms(s["median"]), ms(s["percentile(99%)"]), s["count"]]
        row += [per_s(summary["throughput"]), summary.get("warmup", "-"), summary.get("loop", "-")]
        blocks += [
            ("table", header, [row]),
            ("p", ["From ", Code(summary["_path"]), f" ({summary['tool']}); threads: ", Code(summary.get("threads", "-")), "."]),
            ("p", [measurement_state(summary)]),
        ]
    else:
        blocks.append(summary_problem)
    blocks.append(("h3", "吞吐率", "Throughput, perf_calc.py"))
    if perf:
        rows = [
            [
                Code(Path(r["log"]).name),
                r["tool"],
                r["batch_size"],
                r["chips"],
                r["chips_rule"],
                ms(r["latency_ms"]),
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                per_s(r["fps"]),
                describe_spread(r.get("spread")) if r.get("spread") else "not reported",
            ]
            for r in perf["logs"]
        ]
        header = ["日志 Log", "工具 Tool", "batch", "chips", "芯片规则 Chip rule", "时延 Latency mean (ms)", "p50 (ms)", "p99 (ms)"]
        blocks.append(("table", [*header, "吞吐率 images/s", "波动 Spread"], rows))
    else:
        blocks.append(perf_problem)
    blocks.append(("h3", "批大小扫描", "Batch sweep, perf_sweep.py"))
    if sweep:
        rows = [
            [
                f"bs{r['batch_size']}",
                per_s(r["images_per_s_per_card"]),
                ms(r["latency_ms"]),
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                r["chips"],
                r["tool"],
            ]
            for r in sweep["rows"]
        ]
        for row, r in zip(rows, sweep["rows"]):
            cv = (r.get("spread") or {}).get("cv")
            row[1] += "" if cv is None else f" ±{cv:.1%}" + (" (unstable)" if r.get("unstable") else "")
        best = f"{per_s(sweep['best_images_per_s_per_card'])} (bs{sweep['best_batch']})"
        if sweep.get("best_separated") is False:
            best = f"not named: bs{sweep['best_batch']} ({per_s(sweep['best_images_per_s_per_card'])}) is within the spread of the next"
        rows.append(["最优batch (best)", best, "", "", "", "", ""])
        blocks += [
            ("p", ["Device: ", Code(sweep["device"]), "."]),
            ("table", ["Batch", "images/s per card", "mean (ms)", "p50 (ms)", "p99 (ms)", "chips", "tool"], rows),
        ]
        if sweep["plot"]:
            blocks.append(
                picture(
                    workdir,
                    f"sweep/{sweep['plot']['path']}",
                    "images/s against batch size, beside the guide's figures",
                    sweep["plot"]["sha256"],
                )
            )
    else:
        blocks.append(sweep_problem)
    rows = [[source, batch, f"{latency:g}", per_s(fps)] for source, batch, latency, fps in GUIDE_TABLE]
    rows += [
        [source, batch, "-", per_s(fps)]
        for source, series in REFERENCE_SERIES.items()
        if "newer" in source
        for batch, fps in series.items()
    ]
    return blocks + [
        ("h3", "参考数据", "The guide's reference figures (images/s per card, with their hardware)"),
        ("table", ["来源 Source and hardware", "batch", "时延 Latency (ms)", "吞吐率 images/s"], rows),
    ]


def runner_summary(workdir):
    """The runner's summary of the newest complete run under out/ (checked with the run), or (None, a block)."""
    if not os.path.lexists(workdir / "out"):
        return None, ("missing", ["out/ is missing (the offline step, run_msame.sh)"])
    try:
        run, summary = run_summary(workdir / "out")
    except InputError as err:
        return None, ("invalid", [f"the offline run cannot be used: {err}"])
    if summary is None:
        return None, ("missing", [f"the run {run.path.name} has no runner's summary: it ran with another tool"])
    path = beside_run(run.path, "_summary.json")
    summary["_path"] = relative_inside(workdir, str(path)) or str(path)
    return summary, None


# ---------------------------------------------------------------------------------------------------------
# Rendering. Every text from the run is escaped here, once, for each format.

MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~!#])")
MD_BLOCK_START = re.compile(r"^([+=-]|\d+(?=[.)]))")  # a list item, setext line or ordered item if a paragraph began so


def md_text(text, starts_block=False):
    """Text from the run as Markdown that shows it as it is: every character Markdown (or GFM) would read as markup
    backslash-escaped, on one line; at the start of a paragraph also what would begin a list or a heading line."""
    text = MD_SPECIAL.sub(r"\\\1", re.sub(r"\s*\n\s*", " ", str(text)))
    match = MD_BLOCK_START.match(text) if starts_block else None
    if match:
        end = match.end()
        text = (text[:end] + "\\" + text[end:]) if match.group(1)[0].isdigit() else "\\" + text
    return text


def md_code(text, in_table=False):
    """A code span that holds `text` exactly: fenced with more backticks than its longest run, padded where it
    starts or ends with a backtick; in a table, its pipes escaped (GFM reads them before the span)."""
    text = re.sub(r"\s*\n\s*", " ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def md_segments(segments, in_table=False):
    if isinstance(segments, (str, int, float)):
        segments = [segments]
    return "".join(
        md_code(s, in_table) if isinstance(s, Code) else md_text(s, starts_block=k == 0 and not in_table) for k, s in enumerate(segments)
    )


LABELS = {"missing": "缺失 (missing)", "invalid": "无效 (invalid)", "not_run": "未运行 (not run)", "refused": "已拒绝 (refused)"}


def to_markdown(blocks):
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += [f"{'#' * int(kind[1])} {md_text(block[1])} ({md_text(block[2])})", ""]
        elif kind == "p":
            lines += [md_segments(block[1]), ""]
        elif kind in LABELS:
            lines += [f"**{LABELS[kind]}**: {md_segments(block[1])}", ""]
        elif kind == "table":
            lines += markdown_table(block[1], block[2]) + [""]
        elif kind == "pictures":
            header = [caption for caption, *_ in block[1]]
            cells = [f"![{md_text(caption)}]({quote(path, safe='/')})" for caption, path, *_ in block[1]]
            lines += markdown_table(header, [])[:2] + ["| " + " | ".join(cells) + " |", ""]
        elif kind == "details":
            lines += [md_text(block[1]) + ":", ""] + to_markdown([block[2]]).splitlines() + [""]
    return "\n".join(lines).rstrip() + "\n"


def markdown_table(header, rows):
    def line(cells):
        return "| " + " | ".join(md_segments(c if isinstance(c, Code) else str(c), in_table=True) for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows]


STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,"Noto Sans CJK SC","Source Han Sans SC",
"PingFang SC","Hiragino Sans GB","Microsoft YaHei","WenQuanYi Micro Hei",sans-serif;margin:24px auto;padding:0 24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px;text-align:left}
th{background:#eef}code{font-size:12px;word-break:break-all}.missing,.invalid,.refused{color:#a00}.not_run{color:#666}
figure{display:inline-block;margin:4px 16px 12px 0}figcaption{font-size:12px;color:#555}
h2{border-bottom:2px solid #ccd;padding-bottom:4px;margin-top:32px}"""


def html_segments(segments):
    if isinstance(segments, (str, int, float)):
        segments = [segments]
    return "".join(f"<code>{html.escape(s)}</code>" if isinstance(s, Code) else html.escape(str(s)) for s in segments)


def to_html(blocks, title):
    parts = [
        f"<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
    ]
    parts += [html_block(block) for block in blocks]
    return "\n".join(parts + ["</body></html>"]) + "\n"


def html_block(block):
    kind = block[0]
    if kind in ("h1", "h2", "h3"):
        return f"<{kind}>{html.escape(block[1])} <small>{html.escape(block[2])}</small></{kind}>"
    if kind == "p":
        return f"<p>{html_segments(block[1])}</p>"
    if kind in LABELS:
        return f"<p class='{kind}'><b>{LABELS[kind]}</b>: {html_segments(block[1])}</p>"
    if kind == "table":
        head = "".join(f"<th>{html_segments(h)}</th>" for h in block[1])
        body = "".join("<tr>" + "".join(f"<td>{html_segments(c)}</td>" for c in row) + "</tr>" for row in block[2])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "pictures":
        return "<div>" + "".join(figure(*shown) for shown in block[1]) + "</div>"
    if kind == "details":
        return f"<details><summary>{html.escape(block[1])}</summary>{html_block(block[2])}</details>"
    raise ValueError(kind)


def figure(caption, path, data, kind):
    return (
        f"<figure><img alt='{html.escape(caption)}' data-source='{html.escape(path)}' "
        f"src='data:image/{kind.lower()};base64,{base64.b64encode(data).decode()}'><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def main(args):
    workdir = Path(args.workdir)
    if not workdir.is_dir():
        raise InputError(f"{workdir}: no such workdir")
    known = ("steps.tsv", *STEP_FILES, "out", "images", "sweep")
    if not any(os.path.lexists(workdir / name) for name in known):
        raise InputError(
            f"{workdir}: nothing to report: none of {', '.join(known)} is there (run run_pipeline.sh, or the README's steps, into it)"
        )
    html_path, md_path = check_output_file(workdir / "report.html", "report.html"), check_output_file(workdir / "report.md", "report.md")
    steps, steps_problem = part(workdir, "steps.tsv", read_steps, how=" (the workdir was not made by run_pipeline.sh)")
    export, export_problem = part(workdir, "export.json", how=" (GAN_pth2onnx.py --save_json)")
    testdata, testdata_problem = part(workdir, "testdata.json", how=" (GAN_testdata.py --save_json)")
    compare, compare_problem = part(workdir, "compare.json", how=" (GAN_compare.py --save_json)")
    evaluation, eval_problem = part(workdir, "eval.json", how=" (GAN_eval.py --save_json)")
    perf, perf_problem = part(workdir, "perf.json", how=" (perf_calc.py --save_json)")
    sweep, sweep_problem = part(
        workdir, "sweep/sweep.json", optional=True, how=" (run_pipeline.sh --sweep, or perf_sweep.py --output <workdir>/sweep)"
    )
    summary, summary_problem = runner_summary(workdir)
    regression, regression_problem = part(
        workdir,
        "regression.json",
        read_regression,
        optional=True,
        how=" (run_pipeline.sh --baseline DIR, or GAN_regression.py --save_json)",
    )
    name = workdir.resolve().name
    blocks = [
        ("h1", "GAN 离线推理报告", f"GAN offline inference report, {name}"),
        (
            "p",
            [
                "Workdir ",
                Code(str(workdir)),
                f", report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Every figure below was computed by "
                "the step named with it; this page only gathers them.",
            ],
        ),
    ]
    if testdata_problem and testdata_problem[0] == "invalid":
        blocks.append(testdata_problem)
    for section in (
        section_run(steps, steps_problem),
        section_environment(workdir, testdata, export, summary),
        section_precision(workdir, export, export_problem, compare, compare_problem),
        section_quality(evaluation, eval_problem),
        section_pictures(workdir),
        section_performance(workdir, perf, perf_problem, summary, summary_problem, sweep, sweep_problem),
        *([section_baseline(regression, regression_problem)] if regression or regression_problem[0] != "not_run" else []),
    ):
        blocks += section
    write_bytes_atomic(html_path, to_html(blocks, f"GAN offline inference report: {name}").encode(errors="surrogateescape"))
    write_bytes_atomic(md_path, to_markdown(blocks).encode(errors="surrogateescape"))
    counts = {
        label: sum(1 for b in blocks if b[0] == kind)
        for kind, label in (("missing", "missing"), ("invalid", "invalid"), ("refused", "refused"), ("not_run", "not run"))
    }
    stated = ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "none missing"
    print(f"wrote {html_path} and {md_path} (parts stated: {stated})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
