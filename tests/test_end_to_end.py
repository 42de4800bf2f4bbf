"""The README's commands, pasted in order as a user would, on small sizes (3 batches of 4) with a test checkpoint."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, no_torch_env

OFFLINE_STEPS = (
    "run_msame.sh",
    "msame_onnxruntime.py",
    "GAN_txt2jpg.py",
    "GAN_compare.py",
    "GAN_eval.py",
    "perf_calc.py",
    "perf_sweep.py",
    "GAN_report.py",
    "GAN_regression.py",
)


READMES = ("README.md", "README.zh-CN.md")


def readme_commands(name="README.md", whole=False):
    """Shell lines of the ```bash blocks of a README (between <!-- e2e:begin --> and <!-- e2e:end -->) or of a doc
    (`whole`: every ```bash block). ```text blocks hold the commands for a CANN or TensorRT host, which
    test_ascend_tools.py runs against the doubles; lines marked `# CANN host` likewise."""
    text = (ROOT / name).read_text()
    section = text if whole else text.split("<!-- e2e:begin -->", 1)[1].split("<!-- e2e:end -->", 1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines += [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#") and "# CANN host" not in line]
    return lines


DOCS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md") if not p.name.endswith(".zh-CN.md"))
# Small sizes for the commands that measure this machine: flags appended (argparse keeps the last) or replaced.
SMALL = {
    "tools/GAN_benchmark.py": " --batch_sizes 1 --rounds 2 --round_seconds 0.01 --choice_rows 500 --gemm_size 128",
    "tools/GAN_int8_schemes.py": " --batches 1 --rounds 1",
    "perf_sweep.py": " --batch_sizes 1,4 --images 16 --warmup 1",
}


def small(command):
    command = command.replace("--iters 100 --repeats 3 --scale 10", "--iters 2 --batch_size 4 --repeats 1 --scale 0")
    command = command.replace("--iters 100 --batch_size 64", "--iters 3 --batch_size 4")
    script = next((s for s in SMALL if s in command.split("|")[0]), None)
    return (
        command.split("|")[0].rstrip() + SMALL[script] + ("|" + command.split("|", 1)[1] if "|" in command else "") if script else command
    )


def workspace(tmp_path):
    """A fresh copy of the project's scripts, like a clone."""
    work = tmp_path / "clone"
    work.mkdir()
    for path in ROOT.iterdir():
        if path.suffix in (".py", ".sh") or path.name in READMES:
            shutil.copy(path, work / path.name)
    for folder in ("gan", "tools"):
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "weights", work / "weights", ignore=shutil.ignore_patterns("*_train"))
    return work


def all_commands(name, whole=False):
    """Every command line of a README or doc, in every block (bash and text), for comparing translations."""
    text = (ROOT / name).read_text()
    return [line for block in re.findall(r"```(?:bash|text)\n(.*?)```", text, re.S) for line in block.splitlines() if line.strip()]


def test_both_readmes_hold_the_same_commands_in_the_same_order():
    english, chinese = (readme_commands(name) for name in READMES)
    assert english == chinese, "README.md and README.zh-CN.md must not drift apart"
    assert all_commands("README.md") == all_commands("README.zh-CN.md")
    assert len(english) >= 10
    for name in READMES:
        first = (ROOT / name).read_text().splitlines()[:4]
        assert any(other in line for line in first for other in READMES if other != name), f"{name} links the other"
    for name in READMES:
        assert len((ROOT / name).read_text().splitlines()) <= 310, f"{name}: the commands and key tables only; details go to docs/"


@pytest.mark.parametrize("doc", DOCS)
def test_each_doc_has_its_chinese_twin_with_the_same_commands(doc):
    twin = doc.replace(".md", ".zh-CN.md")
    assert (ROOT / twin).is_file(), f"{twin} is missing"
    assert all_commands(doc) == all_commands(twin), f"{doc} and {twin} must not drift apart"
    assert (
        twin.split("/")[-1] in (ROOT / doc).read_text().splitlines()[2] and doc.split("/")[-1] in (ROOT / twin).read_text().splitlines()[2]
    )


def test_every_link_of_the_readmes_and_docs_resolves():
    for name in [*READMES, *DOCS, *(d.replace(".md", ".zh-CN.md") for d in DOCS)]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", (ROOT / name).read_text()):
            if not target.startswith("http"):
                assert (ROOT / name).parent.joinpath(target).exists(), f"{name} links {target}, which is not there"


@pytest.mark.parametrize("readme", READMES[:1])  # README.zh-CN.md holds the very same commands (the test above)
def test_readme_commands_in_order(tmp_path, checkpoint, readme):
    work = workspace(tmp_path)
    commands = readme_commands(readme)
    assert any("GAN_pth2onnx.py" in c for c in commands) and any("GAN_compare.py" in c for c in commands)
    if readme == "README.md":  # then every runnable command of the docs, in the same workspace, once
        commands += [command for doc in DOCS for command in readme_commands(doc, whole=True)]
    for command in commands:
        command = small(command.replace("weights/generator_mnist.pth", str(checkpoint)))
        command = command.replace("python ", f"{sys.executable} ")
        offline = any(step in command.split("|")[0] for step in OFFLINE_STEPS)
        env = no_torch_env(tmp_path) if offline else None  # the offline half runs on a host without torch
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=work, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"README command failed: {command}\n{result.stdout}\n{result.stderr}"

    vectors = sorted(p.name for p in (work / "vectors").iterdir())
    assert vectors == ["0.bin", "1.bin", "2.bin"]
    (run,) = [p for p in (work / "out").iterdir() if p.is_dir()]
    assert (work / "out" / f".{run.name}.manifest.json").is_file()
    for i in range(3):
        online = np.fromfile(work / "images" / f"{i}.bin", np.float32)
        text = np.array((run / f"{i}_output_0.txt").read_text().split(), np.float32)
        assert np.abs(online - text).max() < 2e-6
        assert Image.open(work / "genimg" / f"{i}.jpg").size == Image.open(work / "images" / f"{i}.jpg").size == (122, 32)
    log = (work / "GAN_bs64.log").read_text()
    assert "Execute sample success" in log
    report = (work / "report.md").read_text()
    assert "PASS (fp32" in report and "steps.tsv is missing" in report, "the report of a workdir filled by hand"


def test_run_pipeline_sh(pipeline_workdir, checkpoint):
    workdir, stdout = pipeline_workdir
    for step in ("export", "testdata", "offline", "txt2jpg", "compare", "eval", "perf", "report", "total"):
        assert re.search(rf"^  {step}\s+\d+\.\d\d s(\s+(\d+ MB|-))?$", stdout, re.M), step
    assert "PASS: fp32" in stdout
    assert len(list((workdir / "genimg").glob("*.jpg"))) == 3 and (workdir / "compare_first_batch.png").is_file()
    fps = re.search(r"GAN_bs4\.log\s+onnxruntime\s+4\s+1\s+\S+\s+\S+\s+\S+\s+([0-9.]+)", stdout)
    assert fps and float(fps.group(1)) > 0
    assert stdout.rstrip().splitlines()[-2:] == [f"== report: {workdir}/report.html", f"== report: {workdir}/report.md"]
    steps = (workdir / "steps.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in steps] == [
        "step",
        "export",
        "testdata",
        "offline",
        "txt2jpg",
        "compare",
        "eval",
        "perf",
        "report",
    ]
    again = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(checkpoint), "--workdir", str(workdir)], capture_output=True, text=True
    )
    assert again.returncode == 1 and "not an empty folder" in again.stderr, "an earlier run is never overwritten"


def test_run_pipeline_sh_stops_on_a_failing_step(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    result = subprocess.run(
        ["bash", str(ROOT / "run_pipeline.sh"), "--pth", str(bad), "--workdir", str(tmp_path / "w")], capture_output=True, text=True
    )
    assert result.returncode != 0 and "not a readable PyTorch checkpoint" in result.stderr
    assert "== testdata" not in result.stdout
