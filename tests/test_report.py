"""GAN_report.py checked as a person would see it: every picture decodes, every link resolves, nothing is left out silently."""

import base64
import io
import json
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
    assert sorted(sources) == sorted(
        ["compare_first_batch.png", "compare_errors.png"] + [f"{side}/{i}.jpg" for i in range(3) for side in ("images", "genimg")]
    )
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
    assert len(links) == 8 and all((workdir / link).is_file() for link in links)
    overall = json.loads((workdir / "compare.json").read_text())["overall"]
    assert f"| {overall['batches']} | {overall['images']} | {overall['max_abs']:.3e} |" in markdown
    elementwise = json.loads((workdir / "compare.json").read_text())["elementwise"]
    assert f"| atol 1e-05, rtol 1e-05 | {elementwise['failing']:,} of {elementwise['elements']:,} (" in markdown, "Polygraphy's figures"
    fps = json.loads((workdir / "perf.json").read_text())["logs"][0]["fps"]
    assert f"{fps:,.1f}" in markdown
    assert re.search(r"^\| export \| `.*GAN_pth2onnx\.py .*` \| ok \| \d+\.\d\d \| \d+ \|$", markdown, re.M)
    assert "| report |" not in markdown, "the report is not a step of its own table"
    assert "AVX" in markdown, "the CPU is named with its instruction sets"


def test_missing_parts_are_stated(pipeline_workdir, tmp_path):
    workdir, _ = pipeline_workdir
    copy = tmp_path / "by_hand"
    shutil.copytree(workdir, copy)
    for name in ("steps.tsv", "eval.json", "perf.json", "report.html", "report.md"):
        (copy / name).unlink()
    result = run_script("GAN_report.py", "--workdir", str(copy))
    assert "(parts stated: 3 missing, 1 not run)" in result.stdout, "a copied workdir keeps its pictures"
    markdown = (copy / "report.md").read_text()
    for missing in ("steps.tsv is missing", "eval.json is missing", "perf.json is missing"):
        assert "**缺失 (missing)**: " in markdown and missing in markdown, missing
    assert "**未运行 (not run)**: sweep/sweep.json is not in this workdir" in markdown, "an optional part is not 'missing'"
    assert_clean_error(run_script("GAN_report.py", "--workdir", str(tmp_path / "nowhere"), check=False), "no such workdir")
    (tmp_path / "empty").mkdir()
    empty = run_script("GAN_report.py", "--workdir", str(tmp_path / "empty"), check=False)
    assert empty.returncode == 1 and assert_clean_error(empty, tmp_path / "empty", "nothing to report")
    assert list((tmp_path / "empty").iterdir()) == [], "nothing written"


# ---------------------------------------------------------------------------------------------------------
# A report is safe to share: escaped text, tables that are tables, only the workdir's own pictures.

HOSTILE = "<img src=x onerror=alert(1)> a`b``c | d *e* [f](http://g) &amp;"


def rendered(markdown_text):
    """report.md as a CommonMark + GFM-tables renderer (markdown-it-py) turns it into HTML."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown_text)


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def check_markdown_renders_as_tables(markdown_text):
    """Every table of report.md renders as a table, each row with its header's number of cells; returns the parsed HTML."""
    page = Tags()
    page.feed(rendered(markdown_text))
    delimiter_rows = re.findall(r"^\|(?:---\|)+$", markdown_text, re.M)
    assert sum(1 for tag, _ in page.tags if tag == "table") == len(delimiter_rows) > 5
    for block in re.findall(r"(?:^\|.*\|$\n?)+", markdown_text, re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.strip().splitlines()}
        assert len(widths) == 1, f"a row with another number of cells than its header:\n{block}"
    return page


def test_text_from_the_run_is_escaped_and_every_table_renders(pipeline_workdir, tmp_path):
    workdir, _ = pipeline_workdir
    hostile = tmp_path / HOSTILE
    shutil.copytree(workdir, hostile)
    compare = json.loads((hostile / "compare.json").read_text())
    compare["reference_read"] = HOSTILE  # a note from the run, as a step saved it
    (hostile / "compare.json").write_text(json.dumps(compare))
    run_script("GAN_report.py", "--workdir", str(hostile))
    markdown = (hostile / "report.md").read_text()
    page = check_markdown_renders_as_tables(markdown)
    assert not [attrs for tag, attrs in page.tags if tag == "img" and "onerror" in attrs], "no HTML from a path is live"
    assert not [attrs for tag, attrs in page.tags if tag == "a"], "no link made from run text"
    assert HOSTILE in "".join(page.text), "the text is shown as it is"
    html_page = Tags()
    html_page.feed((hostile / "report.html").read_text())
    assert not [attrs for tag, attrs in html_page.tags if tag == "img" and "onerror" in attrs]
    assert HOSTILE in "".join(html_page.text)


def test_pictures_outside_the_workdir_or_not_what_they_claim_are_refused(pipeline_workdir, tmp_path):
    workdir, _ = pipeline_workdir
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), "red").save(secret)
    (copy / "images" / "0.jpg").unlink()
    (copy / "images" / "0.jpg").symlink_to(secret)  # a link to a file outside: never embedded
    (copy / "genimg" / "1.jpg").write_text("not a picture")
    shutil.rmtree(copy / "genimg_link", ignore_errors=True)
    run_script("GAN_report.py", "--workdir", str(copy))
    text = (copy / "report.html").read_text()
    sources = [image["data-source"] for image in parse(copy / "report.html").images]
    assert "images/0.jpg" not in sources and "genimg/1.jpg" not in sources and "genimg/0.jpg" in sources
    assert base64.b64encode(secret.read_bytes()).decode()[:40] not in text
    markdown = (copy / "report.md").read_text()
    assert "images/0.jpg` is reached through a symbolic link: not embedded" in markdown
    assert "genimg/1.jpg` does not decode as the JPEG its name claims" in markdown
    assert "](images/0.jpg)" not in markdown and "](genimg/1.jpg)" not in markdown


def test_the_difference_picture_is_the_one_its_comparison_drew(pipeline_workdir, tmp_path):
    workdir, _ = pipeline_workdir
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    # a later comparison (int8, say) without --save_json replaces the picture: the fp32 figures lose it
    Image.new("RGB", (10, 10), "white").save(copy / "compare_first_batch.png")
    run_script("GAN_report.py", "--workdir", str(copy))
    assert "compare_first_batch.png" not in [i["data-source"] for i in parse(copy / "report.html").images]
    assert "is not the one its step drew (sha256 differs: replaced since)" in (copy / "report.md").read_text()
    compare = json.loads((copy / "compare.json").read_text())
    compare["picture"] = None  # this comparison drew none (--diff_image ''): no picture of another is shown
    (copy / "compare.json").write_text(json.dumps(compare))
    run_script("GAN_report.py", "--workdir", str(copy))
    assert "This comparison drew no difference picture" in (copy / "report.md").read_text()
    compare["picture"] = {"path": "../../etc/hostname", "sha256": "0" * 64, "batch": 0}
    (copy / "compare.json").write_text(json.dumps(compare))
    run_script("GAN_report.py", "--workdir", str(copy))
    assert "lies outside the workdir: not embedded" in (copy / "report.md").read_text()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("compare.json", '{"overall": {}}', "not a valid compare.json of its step: reference should be present"),
        ("compare.json", "", "not JSON"),
        (
            "eval.json",
            '{"targets": {"confidence": 0.9, "inception_score": 8, "min_digit_share": 0.05}, "rows": [{"source": 1}]}',
            "rows[0].source should be a string",
        ),
        ("perf.json", '{"logs": [{"log": "a", "tool": "msame", "batch_size": "16"}], "baselines": []}', "logs[0].batch_size should be"),
        ("export.json", "[1, 2]", "the whole file should be an object"),
        ("steps.tsv", "", "the first line should be"),
        ("steps.tsv", "step\tstatus\tseconds\tpeak_mb\tcommand\nexport\tok\t1.5\n", "line 2: 3 fields, expected 5"),
        ("steps.tsv", "step\tstatus\tseconds\tpeak_mb\tcommand\nexport\tok\tfast\t10\tpython x\n", "should be numbers"),
    ],
)
def test_a_step_file_of_the_wrong_shape_is_stated_invalid(pipeline_workdir, tmp_path, name, content, reason):
    workdir, _ = pipeline_workdir
    copy = tmp_path / "work"
    shutil.copytree(workdir, copy)
    (copy / name).write_text(content)
    result = run_script("GAN_report.py", "--workdir", str(copy))
    assert result.stderr == "" and "1 invalid" in result.stdout
    markdown = (copy / "report.md").read_text()
    line = next(line for line in markdown.splitlines() if line.startswith("**无效 (invalid)**"))
    assert name in line and re.sub(r"\\(.)", r"\1", reason) in re.sub(r"\\(.)", r"\1", line), line
    check_markdown_renders_as_tables(markdown)


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
