"""GAN_report.py checked as a person would see it: every picture decodes, every link resolves, nothing is left out silently."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_clean_error, run_script

SECTIONS = ["运行步骤", "推理环境", "精度", "图像质量", "在线与离线图片", "性能"]


class Page(HTMLParser):
    """The parts of report.html a test looks at: headings, pictures, links, scripts."""

    def __init__(self):
        super().__init__()
        self.headings, self.images, self.links, self.scripts, self._in = [], [], [], 0, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._in = tag
            self.headings.append("")
        elif tag == "img":
            self.images.append(attrs)
        elif tag in ("a", "link"):
            self.links.append(attrs.get("href", ""))
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.headings[-1] += data


def parse(path):
    page = Page()
    page.feed(Path(path).read_text())
    return page


def test_report_html_is_self_contained_and_every_picture_decodes(pipeline_workdir):
    workdir, _ = pipeline_workdir
    page = parse(workdir / "report.html")
    assert page.scripts == 0 and not page.links, "no JavaScript, nothing fetched"
    for section in SECTIONS:
        assert any(h.startswith(section) for h in page.headings), section
    sources = [image["data-source"] for image in page.images]
    assert sorted(sources) == sorted(["compare_first_batch.png"] + [f"{side}/{i}.jpg" for i in range(3) for side in ("images", "genimg")])
    for image in page.images:
        kind, data = re.fullmatch(r"data:image/(png|jpeg);base64,(.*)", image["src"], re.S).groups()
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        picture.load()
        expected = Image.open(workdir / image["data-source"])
        assert picture.format == {"png": "PNG", "jpeg": "JPEG"}[kind] and picture.size == expected.size, image["data-source"]
    text = (workdir / "report.html").read_text()
    assert "PASS (fp32" in text and "缺失" not in text.split("批大小扫描")[0], "every section before the optional sweep is there"


def test_report_md_links_resolve_and_figures_are_this_runs(pipeline_workdir):
    import json

    workdir, _ = pipeline_workdir
    markdown = (workdir / "report.md").read_text()
    for section in SECTIONS:
        assert re.search(rf"^## {section} \(", markdown, re.M), section
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 7 and all((workdir / link).is_file() for link in links)
    overall = json.loads((workdir / "compare.json").read_text())["overall"]
    assert f"| {overall['batches']} | {overall['images']} | {overall['max_abs']:.3e} |" in markdown
    fps = json.loads((workdir / "perf.json").read_text())["logs"][0]["fps"]
    assert f"{fps:,.3f}" in markdown
    assert re.search(r"^\| export \| `.*GAN_pth2onnx\.py .*` \| \d+\.\d\d \| \d+ \|$", markdown, re.M)


def test_missing_parts_are_stated(pipeline_workdir, tmp_path):
    workdir, _ = pipeline_workdir
    copy = tmp_path / "by_hand"
    shutil.copytree(workdir, copy)
    for name in ("steps.tsv", "eval.json", "perf.json", "report.html", "report.md"):
        (copy / name).unlink()
    result = run_script("GAN_report.py", "--workdir", str(copy))
    assert "(4 part(s) stated as missing)" in result.stdout
    markdown = (copy / "report.md").read_text()
    for missing in ("steps.tsv is missing", "eval.json is missing", "perf.json is missing", "no batch sweep in this workdir"):
        assert "**缺失 (missing)**: " in markdown and missing in markdown, missing
    assert_clean_error(run_script("GAN_report.py", "--workdir", str(tmp_path / "nowhere"), check=False), "no such workdir")


def test_report_renders_in_a_browser(pipeline_workdir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium'): the report is not rendered")
    workdir, _ = pipeline_workdir
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            (workdir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1280)
    assert (pixels < 128).mean() > 0.02, "text, tables and pictures drawn (not a blank page)"
    assert len(np.unique(pixels)) > 50
