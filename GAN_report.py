"""One page per run: report.html (self-contained) and report.md (a ModelZoo README's layout) from a workdir.

    python GAN_report.py --workdir runs/20261126_101500

run_pipeline.sh calls it last; it also reads a workdir filled by hand with the README's commands. It
computes none of the steps' figures again: it reads what they saved, steps.tsv (run_pipeline.sh: each
step's command, wall time, peak memory), export.json, testdata.json, compare.json, eval.json and
perf.json (each step's --save_json), the runner's summary beside the newest run under out/
(.<run>_summary.json), sweep/sweep.json and sweep/sweep.png (perf_sweep.py) when present, and the
pictures images/<i>.jpg, genimg/<i>.jpg and compare_first_batch.png. It only adds checksums and the
versions of the environment. A part whose file is missing is stated as missing, not left out.
report.html embeds its pictures and needs no network and no JavaScript; report.md links them.
"""

import argparse
import base64
import hashlib
import html
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from gan_cli import InputError, check_output_file, run_main
from gan_io import write_bytes_atomic
from gan_perf import REFERENCE_SERIES, cpu_name
from gan_runs import beside_run, open_run

GRIDS_SHOWN = 3  # online and offline grids of the first batches, side by side
GUIDE_TABLE = [
    ("msame, Ascend 310 card (4 chips), guide", 1, 0.43, 9302.326),
    ("msame, Ascend 310 card (4 chips), guide", 16, 0.47, 136170.213),
    ("trtexec --fp16, NVIDIA T4, guide", 1, 0.0826078, 12105.394),
    ("trtexec --fp16, NVIDIA T4, guide", 16, 0.0887248, 180332.895),
]


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--workdir", required=True, help="the folder run_pipeline.sh (or the README's commands) filled")
    return parser


# ---------------------------------------------------------------------------------------------------------
# What the steps saved.


def load(workdir, name):
    """A step's JSON in the workdir, or None when that step did not save one."""
    path = workdir / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        raise InputError(f"{path}: not readable JSON (written by a step's --save_json?)") from None


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions():
    found = {}
    for package in ("torch", "onnxruntime", "onnx", "numpy", "Pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


# ---------------------------------------------------------------------------------------------------------
# The report as blocks: ("h1"|"h2"|"h3", zh, en), ("p", text), ("missing", text), ("table", header, rows),
# ("pictures", [(caption, path relative to the workdir)]), ("details", summary, block).


def section_run(workdir, steps):
    blocks = [("h2", "运行步骤", "What was run")]
    if not steps:
        return blocks + [("missing", "not recorded: steps.tsv is missing (the workdir was not made by run_pipeline.sh)")]
    rows = [[s["step"], f"`{s['command'].strip()}`", s["seconds"], s["peak_mb"]] for s in steps]
    total = sum(float(s["seconds"]) for s in steps)
    return blocks + [
        ("table", ["步骤 Step", "命令 Command", "耗时 Wall time (s)", "峰值内存 Peak memory (MB)"], rows),
        ("p", f"Total of the steps above: {total:.2f} s (this report is the step after them)."),
    ]


def section_environment(workdir, testdata, export):
    weights = (testdata or {}).get("pth_path") or (export or {}).get("input_file")
    inputs = sorted((workdir / "vectors").glob("*.bin"), key=lambda p: (len(p.name), p.name)) if (workdir / "vectors").is_dir() else []
    rows = [
        ["CPU", f"{cpu_name()}, {os.cpu_count()} cores"],
        ["OS", platform.platform()],
        ["Python", platform.python_version()],
        *[[name, version] for name, version in versions().items()],
    ]
    if testdata:
        rows += [["seed", testdata["seed"]], ["batches x batch size", f"{testdata['iters']} x {testdata['batch_size']}"]]
    else:
        rows.append(["seed", "missing: testdata.json (GAN_testdata.py --save_json)"])
    for label, path in (("weights", weights), ("ONNX model", workdir / "GAN.onnx"), ("first input file", inputs[0] if inputs else None)):
        if path and Path(path).is_file():
            rows.append([f"sha256 of {label}", f"{Path(path).name}: {sha256(path)}"])
        else:
            rows.append([f"sha256 of {label}", f"missing{': ' + str(path) if path else ''}"])
    return [("h2", "推理环境", "Environment"), ("table", ["项目 Item", "值 Value"], rows)]


def section_precision(workdir, export, compare):
    blocks = [("h2", "精度", "Precision")]
    if export:
        rows = [
            [Path(model).name, check["kind"], *(f"{check['max_abs_by_batch'].get(str(b), float('nan')):.3e}" for b in (1, 16, 64))]
            for model, check in export["models"].items()
        ]
        blocks += [
            ("h3", "导出检查", "Export check: ONNX Runtime against PyTorch"),
            ("table", ["模型 Model", "类型 Kind", "batch 1 max abs", "batch 16 max abs", "batch 64 max abs"], rows),
        ]
    else:
        blocks.append(("missing", "export check: export.json is missing (GAN_pth2onnx.py --save_json)"))
    blocks.append(("h3", "离线与在线对比", "Offline against online, GAN_compare.py"))
    if not compare:
        return blocks + [("missing", "compare.json is missing (GAN_compare.py --save_json)")]
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
                    f"{o['max_abs']:.3e}",
                    f"{o['mean_abs']:.3e}",
                    f"{o['cosine']:.7f}",
                    f"{compare['verdict']} ({compare['tolerance']}: {bounds})",
                ]
            ],
        ),
        ("p", f"Reference: {compare['reference_read']}. Offline: {compare['offline_read']}."),
        (
            "details",
            f"Every batch ({len(compare['batches'])})",
            (
                "table",
                ["batch", "images", "max abs", "mean abs", "cosine"],
                [
                    [b["batch"], b["images"], f"{b['max_abs']:.3e}", f"{b['mean_abs']:.3e}", f"{b['cosine']:.7f}"]
                    for b in compare["batches"]
                ],
            ),
        ),
    ]
    picture = relative(workdir, compare.get("diff_image")) or "compare_first_batch.png"
    if (workdir / picture).is_file():
        blocks.append(("pictures", [("online | offline | difference, magnified until its largest value is white", picture)]))
    else:
        blocks.append(("missing", f"the difference picture {picture} is missing"))
    return blocks


def section_quality(evaluation):
    blocks = [("h2", "图像质量", "Image quality, GAN_eval.py")]
    if not evaluation:
        return blocks + [("missing", "eval.json is missing (GAN_eval.py --save_json)")]
    rows = [
        [
            r["source"],
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
    return blocks + [
        (
            "table",
            [
                "样本 Samples",
                "图片 Images",
                "置信度 Confidence",
                "IS analogue",
                "Frechet distance",
                "最少数字 Rarest digit",
                "数字占比 Digit shares 0..9 (%)",
                "目标 Targets",
            ],
            rows,
        ),
        (
            "p",
            f"Targets: confidence >= {t['confidence']}, IS analogue >= {t['inception_score']}, every digit >= {t['min_digit_share']:.0%}.",
        ),
    ]


def section_pictures(workdir):
    pairs = [(f"images/{i}.jpg", f"genimg/{i}.jpg") for i in range(GRIDS_SHOWN) if (workdir / "images" / f"{i}.jpg").is_file()]
    blocks = [("h2", "在线与离线图片", "Online and offline images")]
    if not pairs:
        return blocks + [("missing", "images/<i>.jpg are missing (GAN_testdata.py)")]
    for online, offline in pairs:
        shown = [(f"online (PyTorch) {online}", online)]
        shown.append((f"offline {offline}", offline) if (workdir / offline).is_file() else None)
        blocks.append(("pictures", [s for s in shown if s]))
        if not (workdir / offline).is_file():
            blocks.append(("missing", f"{offline} is missing (GAN_txt2jpg.py)"))
    return blocks


def section_performance(workdir, perf):
    blocks = [("h2", "性能", "Performance"), ("h3", "离线推理时延", "Offline step: latency distribution")]
    summary = runner_summary(workdir)
    if summary:
        s = summary["NPU_compute_time"]
        blocks += [
            (
                "table",
                [
                    "min (ms)",
                    "max (ms)",
                    "mean (ms)",
                    "median (ms)",
                    "p90 (ms)",
                    "p99 (ms)",
                    "calls",
                    "images/s per worker",
                    "warm-up",
                    "loop",
                ],
                [
                    [
                        f"{s['min']:.4f}",
                        f"{s['max']:.4f}",
                        f"{s['mean']:.4f}",
                        f"{s['median']:.4f}",
                        f"{s['percentile(90%)']:.4f}",
                        f"{s['percentile(99%)']:.4f}",
                        s["count"],
                        f"{summary['throughput']:,.1f}",
                        summary.get("warmup", "-"),
                        summary.get("loop", "-"),
                    ]
                ],
            ),
            ("p", f"From {summary['_path']} ({summary.get('tool', 'ais_bench layout')})."),
        ]
    else:
        blocks.append(("missing", "the runner's summary (out/.<run>_summary.json) is missing: the offline step ran with another tool"))
    blocks.append(("h3", "吞吐率", "Throughput, perf_calc.py"))
    if perf:
        rows = [
            [
                Path(r["log"]).name,
                r["tool"],
                r["batch_size"],
                r["chips"],
                f"{r['latency_ms']:.6g}",
                ms(r.get("p50_ms")),
                ms(r.get("p99_ms")),
                f"{r['fps']:,.3f}",
            ]
            for r in perf["logs"]
        ]
        blocks.append(
            (
                "table",
                ["日志 Log", "工具 Tool", "batch", "chips", "时延 Latency mean (ms)", "p50 (ms)", "p99 (ms)", "吞吐率 images/s"],
                rows,
            )
        )
    else:
        blocks.append(("missing", "perf.json is missing (perf_calc.py --save_json)"))
    blocks.append(("h3", "批大小扫描", "Batch sweep, perf_sweep.py"))
    sweep = load(workdir, "sweep/sweep.json")
    if sweep:
        rows = [
            [
                f"bs{r['batch_size']}",
                f"{r['images_per_s_per_card']:,.2f}",
                f"{r['latency_ms']:.4f}",
                ms(r["p50_ms"]),
                ms(r["p99_ms"]),
                r["chips"],
                r["tool"],
            ]
            for r in sweep["rows"]
        ]
        rows.append(["最优batch (best)", f"{sweep['best_images_per_s_per_card']:,.2f} (bs{sweep['best_batch']})", "", "", "", "", ""])
        blocks += [
            ("p", f"Device: {sweep['device']}."),
            ("table", ["Batch", "images/s per card", "mean (ms)", "p50 (ms)", "p99 (ms)", "chips", "tool"], rows),
        ]
        if (workdir / "sweep" / "sweep.png").is_file():
            blocks.append(("pictures", [("images/s against batch size, beside the guide's figures", "sweep/sweep.png")]))
    else:
        blocks.append(
            (
                "missing",
                f"no batch sweep in this workdir (python perf_sweep.py --model {workdir / 'GAN.onnx'} "
                f"--output {workdir / 'sweep'} adds one)",
            )
        )
    rows = [[source, batch, f"{latency:g}", f"{fps:,.3f}"] for source, batch, latency, fps in GUIDE_TABLE]
    rows += [
        [source, batch, "-", f"{fps:,.2f}"]
        for source, series in REFERENCE_SERIES.items()
        if "newer" in source
        for batch, fps in series.items()
    ]
    return blocks + [
        ("h3", "参考数据", "The guide's reference figures (images/s per card, with their hardware)"),
        ("table", ["来源 Source and hardware", "batch", "时延 Latency (ms)", "吞吐率 images/s"], rows),
    ]


def runner_summary(workdir):
    try:
        run = open_run(workdir / "out")
    except InputError:
        return None
    path = beside_run(run.path, "_summary.json")
    summary = load(path.parent, path.name) if path.is_file() else None
    if summary:
        summary["_path"] = relative(workdir, path) or str(path)
    return summary


def ms(value):
    return "-" if value is None else f"{value:.4g}"


def relative(workdir, path):
    """`path` relative to the workdir when it lies inside it, else None."""
    if not path:
        return None
    try:
        return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(workdir)))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Rendering.


def to_markdown(blocks):
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += [f"{'#' * int(kind[1])} {block[1]} ({block[2]})", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "missing":
            lines += [f"**缺失 (missing)**: {block[1]}", ""]
        elif kind == "table":
            lines += markdown_table(block[1], block[2]) + [""]
        elif kind == "pictures":
            lines += [
                "| " + " | ".join(caption for caption, _ in block[1]) + " |",
                "|" + "---|" * len(block[1]),
                "| " + " | ".join(f"![{caption}]({path})" for caption, path in block[1]) + " |",
                "",
            ]
        elif kind == "details":
            lines += [block[1] + ":", ""] + to_markdown([block[2]]).splitlines() + [""]
    return "\n".join(lines).rstrip() + "\n"


def markdown_table(header, rows):
    def cell(value):
        return str(value).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(map(cell, row)) + " |" for row in rows
    ]


STYLE = """body{font-family:"Noto Sans CJK SC","Noto Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 8px;font-size:13px;text-align:left}
th{background:#eef}code{font-size:12px}.missing{color:#a00}figure{display:inline-block;margin:4px 16px 12px 0}
figcaption{font-size:12px;color:#555}h2{border-bottom:2px solid #ccd;padding-bottom:4px;margin-top:32px}"""


def to_html(blocks, workdir, title):
    parts = [
        f"<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>"
    ]
    for block in blocks:
        parts.append(html_block(block, workdir))
    return "\n".join(parts + ["</body></html>"]) + "\n"


def html_block(block, workdir):
    kind = block[0]
    if kind in ("h1", "h2", "h3"):
        return f"<{kind}>{html.escape(block[1])} <small>{html.escape(block[2])}</small></{kind}>"
    if kind == "p":
        return f"<p>{html.escape(block[1])}</p>"
    if kind == "missing":
        return f"<p class='missing'><b>缺失 (missing)</b>: {html.escape(block[1])}</p>"
    if kind == "table":
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
        body = "".join("<tr>" + "".join(f"<td>{cell_html(c)}</td>" for c in row) + "</tr>" for row in block[2])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "pictures":
        return "<div>" + "".join(figure(workdir, caption, path) for caption, path in block[1]) + "</div>"
    if kind == "details":
        return f"<details><summary>{html.escape(block[1])}</summary>{html_block(block[2], workdir)}</details>"
    raise ValueError(kind)


def cell_html(value):
    text = str(value)
    if text.startswith("`") and text.endswith("`"):
        return f"<code>{html.escape(text[1:-1])}</code>"
    return html.escape(text)


def figure(workdir, caption, path):
    data = (workdir / path).read_bytes()
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    return (
        f"<figure><img alt='{html.escape(caption)}' data-source='{html.escape(path)}' "
        f"src='data:image/{kind};base64,{base64.b64encode(data).decode()}'><figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def main(args):
    workdir = Path(args.workdir)
    if not workdir.is_dir():
        raise InputError(f"{workdir}: no such workdir")
    html_path, md_path = check_output_file(workdir / "report.html", "report.html"), check_output_file(workdir / "report.md", "report.md")
    steps = None
    if (workdir / "steps.tsv").is_file():
        lines = (workdir / "steps.tsv").read_text(errors="surrogateescape").splitlines()
        header = lines[0].split("\t")
        steps = [dict(zip(header, line.split("\t", len(header) - 1))) for line in lines[1:] if line.strip()]
    export, testdata = load(workdir, "export.json"), load(workdir, "testdata.json")
    title = f"GAN offline inference report: {workdir.resolve().name}"
    blocks = [
        ("h1", "GAN 离线推理报告", f"GAN offline inference report, {workdir.resolve().name}"),
        (
            "p",
            f"Workdir {workdir}, report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Every figure below was "
            f"computed by the step named with it; this page only gathers them.",
        ),
    ]
    for section in (
        section_run(workdir, steps),
        section_environment(workdir, testdata, export),
        section_precision(workdir, export, load(workdir, "compare.json")),
        section_quality(load(workdir, "eval.json")),
        section_pictures(workdir),
        section_performance(workdir, load(workdir, "perf.json")),
    ):
        blocks += section
    write_bytes_atomic(html_path, to_html(blocks, workdir, title).encode(errors="surrogateescape"))
    write_bytes_atomic(md_path, to_markdown(blocks).encode(errors="surrogateescape"))
    missing = sum(1 for b in blocks if b[0] == "missing")
    print(f"wrote {html_path} and {md_path} ({missing} part(s) stated as missing)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
