"""The command line, fuzzed: every script, every flag, hostile values, and the contract every script promises.

For each step script, Hypothesis draws a command: some of its flags (each given once, twice, or as --flag=value),
each with a hostile or a valid value: numbers that are huge, negative, non-finite, non-numeric, written with
underscores or other digits; text with newlines or a leading dash; paths that are missing, folders, FIFOs, device
nodes, dangling or looping links, names with a newline, a leading dash, bytes that are not UTF-8 or 300 characters;
files with a BOM, CRLF line ends, in UTF-16, truncated, doubled, with a NUL byte or random bytes; folders of a real
run with one file so spoiled, or a record with an impossible date. Valid values come from a real pipeline run
(tests/conftest.py's pipeline_workdir), so that a command reaches past argument parsing into the readers.

The contract, checked on every run:
- the exit status is 0, 1, 2 or 128 + N; the run ends by itself (no hang) and leaves no process behind;
- on failure, exactly one line on stderr, signed by the script; on success every stderr line is signed;
- no traceback, on stderr or stdout;
- no file outside the command's declared outputs is created, changed or removed, and no input is changed
  (an output pointed at an input must be refused, not written over it); no temporary file is left.

Runs go through tests/cli_forkserver.py (a fresh child per command, libraries preloaded). A NUL byte cannot reach a
program through argv (execve refuses it), so NUL is drawn inside files and records, where it can. Huge values of
flags that only ask for more work (--loop, --rounds, ...) are a long run by request, not a fault: those flags draw
only values that must be refused or small ones. CI runs GAN_CLI_FUZZ_EXAMPLES (default 5; 2 for the scripts whose valid commands take seconds) commands per script;
a campaign: GAN_CLI_FUZZ_EXAMPLES=400 python -m pytest -q -p no:randomly tests/test_cli_fuzz.py.
"""

import argparse
import functools
import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conftest import ROOT, run_script

DOUBLES = ROOT / "tests" / "doubles"
EXAMPLES = int(os.environ.get("GAN_CLI_FUZZ_EXAMPLES", "5"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 5,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],  # commands are already short; shrinking would rerun slow ones
)
TIMEOUT = 120  # seconds one command may take; every command here is small work or a refusal

# Valid values, as paths inside the sandbox (a copy of the pool: a real pipeline run under w/).
POOL = {
    "pth": "g.pth",
    "onnx": "w/GAN.onnx",
    "int8": "w/GAN_int8.onnx",
    "om": "w/GAN_bs4.om",
    "vectors": "w/vectors",
    "bin": "w/vectors/0.bin",
    "images": "w/images",
    "out": "w/out",
    "log": "w/GAN_bs4.log",
    "workdir": "w",
    "genimg": "w/genimg",
    "json": "w/compare.json",
    "steps": "w/steps.tsv",
    "keep": "w/keep_dtype.cfg",
    "classifier": str(ROOT / "weights" / "mnist_classifier.onnx"),
    "stats": str(ROOT / "weights" / "mnist_test_stats.npz"),
}

# Per script: inputs (flag -> the pool entries that are valid for it), outputs (flag -> default path, None when
# nothing is written unless asked), text flags (not paths), work flags (a count of work: no huge values), cheap
# values given when the fuzzer leaves a flag out, so that a valid command stays small.
SPECS = {
    "GAN_pth2onnx.py": dict(
        inputs={"--input_file": ["pth"]},
        outputs={"--output_file": "GAN.onnx", "--int8_file": None, "--fp16_file": None, "--save_json": None},
        required={"--input_file": "pth"},
    ),
    "GAN_testdata.py": dict(
        inputs={"--pth_path": ["pth"]},
        outputs={"--online_path": "images", "--offline_path": "vectors", "--save_json": None},
        required={"--pth_path": "pth"},
        cheap={"--iters": "2", "--batch_size": "3", "--quiet": None},
    ),
    "msame_onnxruntime.py": dict(
        inputs={"--model": ["onnx", "int8"], "--input": ["vectors", "bin"]},
        outputs={"--output": None},
        required={"--model": "onnx", "--input": "vectors", "--output": "o/run"},
        work={"--loop", "--warmup"},
        text={"--debug", "--profiler", "--dump", "--dymHW", "--dymDims", "--dymShape", "--outputSize", "--batchsize"}
        | {"--pure_data_type", "--acl_json_path", "--run_mode", "--output_batchsize_axis", "--auto_set_dymdims_mode"}
        | {"--auto_set_dymshape_mode", "--display_all_summary"},
    ),
    "msame_driver.py": dict(
        inputs={"--model": ["om"], "--input": ["vectors", "bin"], "--msame": []},
        outputs={"--output": None},
        required={"--model": "om", "--input": "vectors", "--output": "o/run"},
        work={"--loop", "--warmup"},
    ),
    "GAN_txt2jpg.py": dict(
        inputs={"--txt_path": ["out"]},
        outputs={"--infer_results_path": "genimg"},
        required={"--txt_path": "out"},
        cheap={"--quiet": None},
    ),
    "GAN_compare.py": dict(
        inputs={"--online_path": ["images"], "--offline_path": ["out"]},
        outputs={"--diff_image": "compare_first_batch.png", "--error_plot": "compare_errors.png", "--save_json": None},
        required={"--online_path": "images", "--offline_path": "out"},
        cheap={"--quiet": None},
    ),
    "GAN_eval.py": dict(
        inputs={"--images_path": ["genimg", "images"], "--real_mnist": [], "--classifier": ["classifier"]}
        | {"--reference_stats": ["stats"], "--data_root": []},
        outputs={"--save_json": None},
        required={"--images_path": "genimg"},
        work={"--real_samples", "--epochs"},
        cheap={"--quiet": None},
    ),
    "GAN_layer_compare.py": dict(
        inputs={"--pth": ["pth"], "--onnx": ["onnx", "int8"], "--input": ["bin"]},
        outputs={"--csv": None, "--keep_dtype": "keep_dtype.cfg"},
        required={"--pth": "pth", "--onnx": "onnx", "--input": "bin"},
    ),
    "perf_calc.py": dict(
        inputs={"--log": ["log", "json", "steps"], "--baseline": ["log"]},
        outputs={"--save_json": None},
        required={"--log": "log"},
    ),
    "perf_sweep.py": dict(
        inputs={"--model": ["onnx", "int8", "om"]},
        outputs={"--output": "sweep"},
        required={"--model": "onnx"},
        work={"--images", "--warmup", "--loop"},
        cheap={"--batch_sizes": "1,4", "--images": "8", "--warmup": "0", "--quiet": None},
    ),
    "GAN_regression.py": dict(
        inputs={"--baseline": ["workdir"], "--candidate": ["workdir"], "--classifier": ["classifier"], "--reference_stats": ["stats"]},
        outputs={"--save_json": None},
        required={"--baseline": "workdir", "--candidate": "workdir"},
        work={"--resamples"},
        cheap={"--resamples": "20"},
    ),
    "GAN_report.py": dict(
        inputs={"--workdir": ["workdir"]},
        outputs={},
        inner_outputs=["report.html", "report.md"],
        required={"--workdir": "workdir"},
    ),
    "atc_convert.py": dict(
        inputs={"--onnx": ["onnx", "int8"], "--keep_dtype": ["keep"]},
        outputs={"--output_prefix": "GAN_bs", "--dynamic_output": "GAN_dyn"},
        required={"--onnx": "onnx"},
        text={"--soc_version"},
        cheap={"--batch_sizes": "4"},
    ),
    "run_pipeline.py": dict(
        inputs={"--pth": ["pth"], "--baseline": ["workdir"]},
        outputs={"--workdir": "runs"},
        required={"--pth": "pth"},
        work={"--iters"},
        cheap={"--iters": "1", "--batch_size": "2"},
    ),
    "tools/GAN_benchmark.py": dict(
        inputs={"--pth": ["pth"], "--onnx": ["onnx"], "--int8": ["int8"]},
        outputs={"--log_dir": "bench_logs"},
        required={"--pth": "pth"},
        work={"--rounds", "--round_seconds", "--choice_rows", "--gemm_size"},
        cheap={
            "--batch_sizes": "1",
            "--rounds": "2",
            "--round_seconds": "0",
            "--choice_rows": "8",
            "--gemm_size": "64",
            "--skip": "torch_compile,openvino",
        },
    ),
    "tools/GAN_int8_schemes.py": dict(
        inputs={"--pth": ["pth"]},
        outputs={},
        required={"--pth": "pth"},
        text={"--emulate_cpu"},
        work={"--batches", "--rounds"},
        cheap={"--batches": "1", "--rounds": "1"},
    ),
    "tools/GAN_pipeline_benchmark.py": dict(
        inputs={"--pth": ["pth"]},
        outputs={},
        required={"--pth": "pth"},
        work={"--iters", "--repeats", "--scale"},
        cheap={"--iters": "1", "--batch_size": "2", "--repeats": "1", "--scale": "0"},
    ),
    "tools/GAN_train.py": dict(
        inputs={"--data_root": ["workdir"], "--resume": ["pth"], "--eval_model": ["classifier"]},
        outputs={"--output": None},
        required={"--data_root": "workdir", "--output": "o/G.pth"},
        work={"--epochs", "--eval_samples", "--batch_size"},
        cheap={"--epochs": "1", "--eval_samples": "8"},
    ),
}

NUMBERS = ["0", "-1", "-0", "1.5", "nan", "inf", "-inf", "1e999", "0x10", "", " ", "x", "1_0", "\u0663", "4\n", "\n4"]
HUGE = ["18446744073709551617", "99999999999999999999999999999", "1e308"]
LISTS = ["1,2,,3", "1,-2", "4,4", "0,1", "1 16 64", "64,", ",", "1;2", "2048,2049"]
TEXTS = ["", " ", "-x", "--", "a\nb", "\t", "\u00e9\u4e2d", "x" * 300, "\udcff"]


def parser_of(script):
    return importlib.import_module(Path(script).stem).get_args_parser()  # tools/ is on the path too (conftest)


@functools.cache
def flags_of(script):
    """(option string, action) for every flag of the script, its short aliases included."""
    return [
        (option, action)
        for action in parser_of(script)._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
    ]


# ---------------------------------------------------------------------------------------------------------
# Values: a string, or a recipe for a path made in the sandbox just before the run.

IN_KINDS = ["valid", "valid", "missing", "empty", "folder", "fifo", "dangling", "loop", "link", "device", "dash"]
IN_KINDS += ["newline", "non_utf8", "long", "bom", "crlf", "utf16", "truncated", "doubled", "nul", "junk", "date"]
OUT_KINDS = ["fresh", "fresh", "decoy_file", "decoy_folder", "missing_parent", "under_file", "fifo", "dangling"]
OUT_KINDS += ["link_to_sentinel", "device", "newline", "dash", "non_utf8", "long", "an_input"]


def value_strategy(spec, option, action):
    name = action.option_strings[0]
    if action.nargs == 0:
        return st.just(None)
    if action.choices is not None and action.type is None:
        return st.sampled_from(list(action.choices) + TEXTS[:4] + [str(action.choices[0]).upper()])
    if name in spec.get("text", ()):
        return st.sampled_from(TEXTS + ["true", "false", "1", "0"])
    if action.type is not None:
        valid = ["1", "2", "4"] + (list(action.choices) if action.choices else [])
        if name in spec.get("work", ()):
            return st.sampled_from(NUMBERS + LISTS + valid)
        return st.sampled_from(NUMBERS + LISTS + valid + HUGE) | st.integers(-(2**70), 2**70).map(str)
    if name in spec["outputs"]:
        return st.tuples(st.just("out"), st.sampled_from(OUT_KINDS), st.just(None))
    bases = spec["inputs"].get(name, [])
    return st.tuples(st.just("in"), st.sampled_from(IN_KINDS), st.sampled_from(bases or sorted(POOL)))


@st.composite
def command(draw, script):
    spec = SPECS[script]
    flags = flags_of(script)
    chosen = draw(st.lists(st.sampled_from(flags), max_size=4, unique_by=lambda pair: pair[1].dest))
    words = []
    for option, action in chosen:
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
            value = draw(value_strategy(spec, option, action))
            form = "flag" if value is None else draw(st.sampled_from(["separate", "separate", "equals"]))
            words.append((option, value, form))
    given_dests = {action.dest for _, action in chosen}
    if draw(st.integers(0, 9)) > 0:  # most commands are complete, so that the readers are reached
        for option, base in spec.get("required", {}).items():
            if parser_dest(script, option) not in given_dests:
                words.append((option, ("in", "valid", base) if base in POOL else base, "separate"))
    for option, value in spec.get("cheap", {}).items():
        if parser_dest(script, option) not in given_dests:
            words.append((option, value, "flag" if value is None else "separate"))
    if draw(st.integers(0, 19)) == 0:
        words.append((draw(st.sampled_from(["--no_such_flag", "stray", "-"])), None, "flag"))
    return draw(st.permutations(words)), draw(st.integers(0, 9)) == 0  # the order of flags, TMPDIR missing


def parser_dest(script, option):
    return next(action.dest for opt, action in flags_of(script) if opt == option)


class Sandbox:
    """A fresh copy of the pool; materialises path recipes; snapshots the tree."""

    def __init__(self, pool, root):
        self.root = Path(root)
        shutil.copytree(pool, self.root, symlinks=True)
        for sub in ("h", "o", "tmp"):
            (self.root / sub).mkdir()
        self.count = 0
        self.inputs, self.outputs = [], []
        (self.root / "h" / "sentinel").write_text("a file outside every output\n")

    def fresh_name(self, stem="p"):
        self.count += 1
        return f"h/{stem}{self.count}"

    def spoiled_copy(self, base, kind):
        """A copy of `base` (a file, or a folder with one of its files) spoiled in one way."""
        source = self.root / base if not os.path.isabs(base) else Path(base)
        target = self.root / self.fresh_name(kind)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
            files = sorted(p for p in target.rglob("*") if p.is_file())
            victim = files[self.count % len(files)] if files else None
        else:
            shutil.copyfile(source, target)
            victim = target
        if victim is not None:
            victim.write_bytes(spoil(victim.read_bytes(), kind))
        return target

    def path(self, recipe, inputs_so_far):
        role, kind, base = recipe
        base_path = POOL.get(base, base) if base else None
        name = self.fresh_name(kind)
        full = self.root / name
        if kind == "valid":
            text = base_path
        elif kind in ("missing", "fresh"):
            text = name if role == "in" else f"o/new{self.count}"
        elif kind == "empty":
            full.write_bytes(b"")
            text = name
        elif kind in ("folder", "decoy_folder"):
            full.mkdir()
            (full / "keep.txt").write_text("decoy\n")
            text = name
        elif kind == "decoy_file":
            full.write_text("decoy\n")
            text = name
        elif kind == "fifo":
            os.mkfifo(full)
            text = name
        elif kind == "device":  # a node of /dev/null's kind, inside the sandbox (never the machine's own)
            os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            text = name
        elif kind == "dangling":
            os.symlink("nowhere/at/all", full)
            text = name
        elif kind == "loop":
            os.symlink(full.name, full)
            text = name
        elif kind == "link":
            os.symlink(self.root / base_path if not os.path.isabs(base_path) else base_path, full)
            text = name
        elif kind == "link_to_sentinel":
            os.symlink(self.root / "h" / "sentinel", full)
            text = name
        elif kind == "missing_parent":
            text = f"o/missing{self.count}/deeper/x"
        elif kind == "under_file":
            text = "h/sentinel/x"
        elif kind in ("dash", "newline", "non_utf8", "long"):
            leaf = {"dash": "-x", "newline": "a\nb", "non_utf8": "caf\udce9", "long": "y" * 300}[kind]
            text = f"h/{leaf}{self.count}" if kind != "dash" else f"{leaf}{self.count}"
            if role == "in" and kind != "long":
                source = self.root / base_path if not os.path.isabs(base_path) else Path(base_path)
                copy = shutil.copytree if source.is_dir() else shutil.copyfile
                copy(source, self.root / text)
        elif kind == "an_input":
            text = inputs_so_far[self.count % len(inputs_so_far)] if inputs_so_far else "h/sentinel"
        else:
            text = str(self.spoiled_copy(base_path, kind).relative_to(self.root))
        (self.inputs if role == "in" else self.outputs).append(text)
        return text

    def snapshot(self):
        tree = {}
        for folder, dirs, files in os.walk(self.root):
            for entry in dirs + files:
                full = os.path.join(folder, entry)
                info = os.lstat(full)
                digest = None
                if stat.S_ISREG(info.st_mode):
                    with open(full, "rb") as stream:
                        digest = hashlib.sha1(stream.read()).hexdigest()
                elif stat.S_ISLNK(info.st_mode):
                    digest = os.readlink(full)
                tree[os.path.relpath(full, self.root)] = (stat.S_IFMT(info.st_mode), digest)
        return tree


def spoil(data, kind):
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "doubled":
        return data + data
    if kind == "nul":
        return data[: len(data) // 3] + b"\x00" + data[len(data) // 3 :]
    if kind == "date":  # every time in the file made impossible
        return re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", b"2026-02-30T25:61:00", re.sub(rb"(\d{8})_(\d{6})", rb"20261399_256199", data))
    return bytes((b * 7 + 13) % 256 for b in data[:512])  # junk of the same start


def words_to_argv(words, sandbox):
    argv, inputs = [], []
    for option, value, form in words:
        if isinstance(value, tuple):
            value = sandbox.path(value, inputs)
            if value in sandbox.inputs:
                inputs.append(value)
        if value is None:
            argv.append(option)
        elif form == "equals":
            argv.append(f"{option}={value}")
        else:
            argv += [option, value]
    return argv


def declared_outputs(script, argv, sandbox):
    """Paths (and names starting with them) the command may write: its output flags' values, else their defaults."""
    spec = SPECS[script]
    parser = parser_of(script)
    parser.error = lambda message: None
    parser.exit = lambda *a, **k: None
    try:
        args, _ = parser.parse_known_args(argv)
    except Exception:  # noqa: BLE001  (a value the parser refuses: the script refuses it too, and writes nothing)
        return set(sandbox.outputs)
    declared = set(sandbox.outputs)
    for option, default in spec["outputs"].items():
        value = getattr(args, parser_dest(script, option), None) if args is not None else None
        for path in [value or default] if not isinstance(value, list) else value:
            if path:
                declared.add(os.path.relpath(os.path.join(sandbox.root, path), sandbox.root))
    if script == "tools/GAN_pipeline_benchmark.py" and "--keep" in argv:  # the work folders it keeps, as it says
        declared.add("tmp/pipeline_")
    if script == "tools/GAN_train.py" and "--download" in argv:  # where MNIST is downloaded to
        declared |= {os.path.normpath(p) for p in sandbox.inputs}
    if script == "tools/GAN_train.py":  # its samples and checkpoints: <output stem>_train/
        declared |= {str(Path(p).with_suffix("")) + "_train" for p in list(declared)}
    if script == "GAN_pth2onnx.py":  # its int8 model and fp16 preview default to <output_file stem>_int8/_fp16emu.onnx
        declared |= {str(Path(p).with_suffix("")) for p in list(declared)}
    for inner in spec.get("inner_outputs", []):
        for value in sandbox.inputs:
            declared.add(os.path.normpath(os.path.join(value, inner)))
    return declared


def within(path, roots):
    return any(path.startswith(root) for root in roots if root)  # the path, what lies in it, names it begins


def is_parent(path, roots):
    """A folder made on the way to an output (--output o/new/deeper/x makes o/new and o/new/deeper)."""
    return any(root.startswith(path + "/") for root in roots)


def check_contract(name, reply, stdout, stderr, before, after, sandbox, declared):
    """The universal contract of a command signed `name`; returns what it broke (empty when kept)."""
    broken = []
    if reply["timed_out"]:
        broken.append(f"did not end within {TIMEOUT} s")
    elif reply["rc"] is None:
        broken.append(f"killed by signal {reply['signal']}")
    elif reply["rc"] not in (0, 1, 2) and not 129 <= reply["rc"] <= 192:
        broken.append(f"exit status {reply['rc']}")
    if reply["survivors"]:
        broken.append("left a process running")
    if "Traceback" in stderr or "Traceback" in stdout:
        broken.append("printed a traceback")
    lines = stderr.splitlines()
    if reply["rc"] not in (0, None) and len(lines) != 1:
        broken.append(f"{len(lines)} stderr lines on failure")
    if any(not line.startswith((f"{name}: ", f"{name} (")) for line in lines):  # run_pipeline.sh (step)
        broken.append("an unsigned stderr line")
    inputs = {os.path.normpath(p) for p in sandbox.inputs if not p.startswith("/")}
    for path in sorted(set(before) | set(after)):
        if before.get(path) == after.get(path):
            continue
        if path == "tmp/.ses" or path.startswith("tmp/torchinductor_"):  # the libraries' own: ONNX Runtime's
            continue  # telemetry session file (its first-launch time), torch's compile cache
        if (path.startswith("tmp/") or path == "tmp") and not within(path, declared):
            broken.append(f"left a temporary file {path!r}")
        elif within(path, inputs) and path in before and not within(path, declared - inputs):
            broken.append(f"changed an input {path!r}")
        elif not within(path, declared) and not (after.get(path, (None,))[0] == stat.S_IFDIR and is_parent(path, declared)):
            broken.append(f"touched {path!r} outside its outputs")
    return broken


# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool(pipeline_workdir, checkpoint, tmp_path_factory):
    """A real pipeline run (w/), its checkpoint (g.pth), an int8 model and an .om (atc's double) beside it."""
    root = tmp_path_factory.mktemp("cli_fuzz_pool") / "pool"
    shutil.copytree(pipeline_workdir[0], root / "w", symlinks=True)
    (root / "w" / ".pipeline.lock").unlink(missing_ok=True)
    shutil.copyfile(checkpoint, root / "g.pth")
    work = root / "w"
    run_script("GAN_pth2onnx.py", f"--input_file={root / 'g.pth'}", f"--output_file={work / 'GAN.onnx'}", "--quantize", "int8")
    env = dict(os.environ, PATH=f"{DOUBLES}:{os.environ['PATH']}")
    run_script("atc_convert.sh", "--onnx", str(work / "GAN.onnx"), "--batch_sizes", "4", "--output_prefix", str(work / "GAN_bs"), env=env)
    (work / "keep_dtype.cfg").write_text("/model/model.3/BatchNormalization\n")  # as GAN_layer_compare.py --advise writes it
    return root


@pytest.fixture(scope="module")
def forkserver():
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "cli_forkserver.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield server
    server.stdin.close()
    server.wait(timeout=30)


def run_fuzzed(forkserver, pool, script, words, tmpdir_missing, shell=None):
    """One drawn command, in a fresh sandbox: through the fork server, or with `shell` the real `bash shell ...`."""
    with tempfile.TemporaryDirectory() as scratch:
        sandbox = Sandbox(pool, Path(scratch) / "s")
        argv = words_to_argv(words, sandbox)
        declared = declared_outputs(script, argv, sandbox)
        before = sandbox.snapshot()
        env = dict(os.environ, PATH=f"{DOUBLES}:{os.environ['PATH']}", PYTHONPATH=str(DOUBLES))
        env["TMPDIR"] = str(sandbox.root / ("no_such_tmp" if tmpdir_missing else "tmp"))
        env.pop("PYTEST_XDIST_WORKER", None)
        signature = shell or ("run_pipeline.sh" if script == "run_pipeline.py" else Path(script).name)
        if script == "run_pipeline.py" and not shell:
            env["GAN_PROG"] = "run_pipeline.sh"
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        if shell:
            reply = run_shell([str(ROOT / shell), *argv], sandbox.root, env, out, err)
        else:
            request = {"argv": [str(ROOT / script), *argv], "cwd": str(sandbox.root), "env": env, "timeout": TIMEOUT}
            forkserver.stdin.write(json.dumps(request | {"stdout": str(out), "stderr": str(err)}) + "\n")
            forkserver.stdin.flush()
            reply = json.loads(forkserver.stdout.readline())
        stdout = out.read_text(errors="replace")
        stderr = err.read_text(errors="replace")
        after = sandbox.snapshot()
        broken = check_contract(signature, reply, stdout, stderr, before, after, sandbox, declared)
        if record_campaign(signature, argv, reply, broken, stderr):
            return
        assert not broken, (
            f"{signature} {argv!r}: {'; '.join(broken)}\nexit {reply['rc']}\nstderr: {stderr[-2000:]}\nstdout: {stdout[-800:]}"
        )


def run_shell(argv, cwd, env, out, err):
    """`bash script.sh ARGS` in its own session, replied in the fork server's shape."""
    started = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            ["bash", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            process.wait(timeout=TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            timed_out = True
    try:
        os.killpg(process.pid, 0)
        survivors = True
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        survivors = False
    code = process.returncode
    return {
        "rc": code if code >= 0 else None,
        "signal": -code if code < 0 else None,
        "timed_out": timed_out,
        "survivors": survivors,
        "seconds": time.monotonic() - started,
    }


def record_campaign(script, argv, reply, broken, stderr):
    """A campaign (GAN_CLI_FUZZ_LOG=FILE) writes one JSON line per command and goes on past a broken one, so that
    its counts cover every command tried; returns whether it did."""
    log = os.environ.get("GAN_CLI_FUZZ_LOG")
    if log:
        line = {"script": script, "argv": argv, "rc": reply["rc"], "seconds": round(reply["seconds"], 3), "broken": broken}
        line["stderr"] = stderr[-400:] if broken else stderr.splitlines()[-1:]
        with open(log, "a") as stream:
            stream.write(json.dumps(line) + "\n")
    return bool(log)


HEAVY = {"tools/GAN_benchmark.py", "tools/GAN_int8_schemes.py", "tools/GAN_pipeline_benchmark.py", "run_pipeline.py", "GAN_regression.py"}


@pytest.mark.parametrize("script", sorted(SPECS))
def test_every_flag_keeps_the_contract(script, forkserver, pool):
    # The scripts whose valid commands take seconds draw fewer commands in CI; a campaign draws as many for each.
    @settings(fuzz, max_examples=min(EXAMPLES, 2) if script in HEAVY and EXAMPLES <= 5 else EXAMPLES)
    @given(drawn=command(script))
    def check(drawn):
        words, tmpdir_missing = drawn
        run_fuzzed(forkserver, pool, script, words, tmpdir_missing)

    check()


# The shell entry points, run for real: what they check themselves, then the same words passed on. Fewer commands
# (each starts an interpreter and loads its libraries).
SHELLS = [("run_msame.sh", "msame_onnxruntime.py"), ("run_msame.sh", "msame_driver.py"), ("atc_convert.sh", "atc_convert.py")]
SHELLS += [("run_pipeline.sh", "run_pipeline.py")]


@pytest.mark.parametrize(("shell", "script"), SHELLS)
def test_shell_entry_points_keep_the_contract(shell, script, forkserver, pool):
    @settings(fuzz, max_examples=max(2, EXAMPLES // 3))
    @given(drawn=command(script))
    def check(drawn):
        words, tmpdir_missing = drawn
        run_fuzzed(forkserver, pool, script, words, tmpdir_missing, shell=shell)

    check()


def test_every_script_and_flag_is_fuzzed():
    """A new script or flag cannot slip past the fuzzer: every step script has a spec, every path flag a role."""
    steps = {p.name for p in ROOT.glob("*.py") if p.name[0].isupper() or p.name in {"perf_calc.py", "perf_sweep.py"}}
    steps |= {"msame_onnxruntime.py", "msame_driver.py", "atc_convert.py", "run_pipeline.py"}
    steps |= {f"tools/{p.name}" for p in (ROOT / "tools").glob("*.py")}
    assert steps - {"models.py"} == set(SPECS)
    for script, spec in SPECS.items():
        for _, action in flags_of(script):
            name = action.option_strings[0]
            if action.nargs == 0 or action.type is not None or action.choices is not None:
                continue
            assert name in spec["inputs"] or name in spec["outputs"] or name in spec.get("text", ()), (script, name)


@pytest.fixture(scope="module", autouse=True)
def repository_untouched():
    """Nothing a fuzzed command does reaches the repository itself (weights/, the scripts, the doubles)."""

    def status():  # files git does not track (outputs a command could write here), less the test run's caches
        listing = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True).stdout
        new = [line for line in listing.splitlines() if line[:2] in ("??", "!!")]
        weights = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in (ROOT / "weights").iterdir()}
        return [line for line in new if not re.search(r"__pycache__|\.pytest_cache|\.hypothesis|^\?\? tests/", line)], weights

    before = status()
    yield
    assert status() == before
