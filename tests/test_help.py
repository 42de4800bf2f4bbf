"""--help matches the READMEs and the docs: every flag a command of theirs passes to a script of this project is in
that script's --help, every script's --help shows each default once, and errors are signed by the script run."""

import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOCUMENTS = ["README.md", "README.zh-CN.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
SCRIPTS = sorted(
    p.name for p in ROOT.iterdir() if p.suffix in (".py", ".sh") and (p.name.startswith(("GAN_", "perf_", "run_", "atc_", "msame_")))
)


def documented_flags():
    """{script: {flags}} of every command line of the READMEs and docs that runs one of this project's scripts."""
    found = {}
    for name in DOCUMENTS:
        text = (ROOT / name).read_text()
        for block in re.findall(r"```(?:bash|text)\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split(" # ")[0].split("|")[0]
                match = re.search(r"(?:python3?|bash)\s+(\S+\.(?:py|sh))\b(.*)", line)
                if match and match.group(1) in SCRIPTS:
                    found.setdefault(match.group(1), set()).update(re.findall(r"(--[a-zA-Z0-9_]+)", match.group(2)))
    return found


def help_text(script):
    command = ["bash", str(ROOT / script)] if script.endswith(".sh") else [sys.executable, str(ROOT / script)]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("script, flags", sorted(documented_flags().items()))
def test_every_flag_the_documents_use_is_in_the_script_s_help(script, flags):
    text = help_text(script)
    missing = sorted(flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", text))
    assert not missing, f"{script} --help does not list {missing}, which the READMEs or docs use"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once(script):
    text = help_text(script)
    assert "(default: None)" not in text and not re.search(r"\(default: [^)]*\)\s*\(default:", text)
    assert "usage:" in text


def test_the_documents_cover_the_scripts_users_run():
    documented = set(documented_flags())
    for script in (
        "GAN_pth2onnx.py",
        "GAN_testdata.py",
        "run_msame.sh",
        "GAN_txt2jpg.py",
        "GAN_compare.py",
        "GAN_eval.py",
        "perf_calc.py",
        "perf_sweep.py",
        "GAN_report.py",
        "atc_convert.sh",
        "GAN_layer_compare.py",
        "GAN_regression.py",
    ):
        assert script in documented, script


@pytest.mark.parametrize("outfmt", ["txt", "TXT", "Txt"])
def test_outfmt_takes_any_case_everywhere(outfmt, onnx_model, testdata, tmp_path):
    _, vectors = testdata
    for command in (
        [
            "bash",
            str(ROOT / "run_msame.sh"),
            "--model",
            str(onnx_model),
            "--input",
            str(vectors),
            "--output",
            str(tmp_path / "o"),
            "--outfmt",
            outfmt,
        ],
        [sys.executable, str(ROOT / "tools/GAN_pipeline_benchmark.py"), "--outfmt", outfmt, "--help"],
    ):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    result = subprocess.run(["bash", str(ROOT / "run_pipeline.sh"), "--outfmt", outfmt, "--iters", "0"], capture_output=True, text=True)
    assert "--iters: expected a positive integer, got 0" in result.stderr and "outfmt" not in result.stderr, (
        "the case of --outfmt is accepted; --iters is what is wrong"
    )


def test_errors_are_signed_by_the_script_the_user_ran(onnx_model, tmp_path):
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "run_msame.sh"),
            "--model",
            str(onnx_model),
            "--input",
            str(tmp_path / "nowhere"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.startswith("run_msame.sh: error: "), result.stderr
    result = subprocess.run(
        ["bash", str(ROOT / "atc_convert.sh"), "--onnx", str(tmp_path / "none.onnx"), "--dry_run"], capture_output=True, text=True
    )
    assert result.stderr.startswith("atc_convert.sh: error: "), result.stderr
