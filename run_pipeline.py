"""The whole guide in one command on ONNX Runtime: export, test data, offline inference, JPEGs, precision, image
quality, throughput, report. Each step is one of the scripts the README runs by hand, run as a child process.

    bash run_pipeline.sh [--pth X.pth] [--workdir DIR] [--iters 100] [--batch_size 64] [--seed 0] [--outfmt TXT] [--sweep]

Every argument is checked before the first step (exit 2 for a bad flag, 1 for a file that is not there), so a
mistake never leaves a half-filled workdir. One pipeline per workdir: a lock inside it is taken before the
emptiness check. Each step runs in a process group of its own that dies with the pipeline (Linux
PR_SET_PDEATHSIG): SIGKILL of the pipeline (a CI timeout, a cancelled job) leaves no step running. SIGINT,
SIGTERM and SIGHUP are passed to the running step, which is waited for, recorded as interrupted in steps.tsv,
and the pipeline exits 128 + N. A step that fails stops the pipeline with its exit code; a step ended by a
signal (SIGKILL from the OOM killer) is named in one line with the signal, exit 128 + N. Nothing is written
outside the workdir; the default workdir, runs/<date>_<time>, is made exclusively (a second pipeline started
in the same second gets runs/<date>_<time>_2).
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)


import argparse
import fcntl
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from gan.cli import (
    HelpFormatter,
    InputError,
    die_with_parent,
    ensure_dir,
    install_signal_handlers,
    non_negative_int,
    positive_int,
    run_main,
)
from gan.files import JPEG_MAX_IMAGES
from gan.records import STEPS_HEADER

HERE = Path(__file__).resolve().parent


def batch_size(text):
    value = positive_int(text)
    if value > JPEG_MAX_IMAGES:  # GAN_testdata.py's limit for its JPEG grids
        raise argparse.ArgumentTypeError(f"a grid of more than {JPEG_MAX_IMAGES} images is taller than JPEG allows, got {value}")
    return value


def outfmt(text):
    if text.upper() not in ("TXT", "BIN"):
        raise argparse.ArgumentTypeError(f"expected TXT or BIN (any case), got {text!r}")
    return text.upper()


def get_args_parser():
    parser = argparse.ArgumentParser(
        prog="run_pipeline.sh", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 2)[2]
    )
    parser.add_argument("--pth", default=str(HERE / "weights" / "generator_mnist.pth"), help="generator weights (default: bundled)")
    parser.add_argument("--workdir", default=None, help="a new or empty folder for every artefact (default: runs/<date>_<time>)")
    parser.add_argument("--iters", type=positive_int, default=100, help="batches of latent vectors")
    parser.add_argument("--batch_size", type=batch_size, default=64, help="latent vectors per batch")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent vectors")
    parser.add_argument("--outfmt", type=outfmt, default="TXT", help="offline output format, TXT or BIN in any case")
    parser.add_argument(
        "--baseline", default=None, help="a workdir of an earlier run: GAN_regression.py judges this run against it (report section)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also run perf_sweep.py into <workdir>/sweep (about 15 s), shown in the report"
    )
    return parser


class Stop(Exception):
    """The pipeline ends with this exit code; the step (or the pipeline) has printed its one line."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def make_workdir(workdir):
    """The workdir, made (the default exclusively: never one another pipeline just made), locked and checked empty.
    Returns (path, lock file object): the lock is held until the pipeline ends."""
    if workdir is None:
        base = Path("runs") / datetime.now().strftime("%Y%m%d_%H%M%S")
        path, n = base, 1
        while True:
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}_{n}")
            except OSError as err:
                raise InputError(f"{path}: cannot create the work folder ({err.strerror})") from None
    else:
        path = ensure_dir(workdir, "the work folder")
    lock_path = path / ".pipeline.lock"
    try:
        lock = open(lock_path, "a")  # held open, and locked, for the whole pipeline
    except OSError as err:
        raise InputError(f"{lock_path}: cannot create the workdir's lock file ({err.strerror})") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise InputError(
            f"{path}: another run_pipeline.sh is writing into it (it holds {lock_path}): wait for it, or pass another --workdir"
        ) from None
    if any(name != ".pipeline.lock" for name in os.listdir(path)):
        raise InputError(f"{path} is not an empty folder: pass --workdir with a new or empty folder")
    return path, lock


class Steps:
    """Runs each step as a child in its own process group that dies with the pipeline, records it in steps.tsv, and
    passes SIGINT, SIGTERM and SIGHUP on to it."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.table = workdir / "steps.tsv"  # what GAN_report.py shows under "what was run"
        self.table.write_text("\t".join(STEPS_HEADER) + "\n")
        self.timings = []
        self.child = None
        self.signalled = None
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        if self.child is None:  # between steps
            name = signal.Signals(signum).name
            print(
                f"run_pipeline.sh: error: interrupted by {name} between steps; the workdir {self.workdir} holds the steps done so far",
                file=sys.stderr,
            )
            raise Stop(128 + signum)
        if self.signalled is None:
            self.signalled = signum
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def _record(self, name, status, seconds, peak, shown):
        with open(self.table, "a") as table:
            table.write(f"{name}\t{status}\t{seconds:.2f}\t{peak}\t{shown}\n")

    def run(self, name, command, shown=None, stdout=None, judgement=False):
        """Run one step; on failure raise Stop with the step's exit code (or 128 + N for a signal). A judgement (the
        regression step) that exits 1 has said why in its line; the pipeline goes on to the report and exits 1."""
        shown = shown or shlex.join(command)
        print(f"== {name}: {shown}", flush=True)
        parent = os.getpid()

        def in_child():
            os.setsid()  # a process group of its own: a signal passed on reaches all of it
            die_with_parent(parent)

        started = time.perf_counter()
        env = dict(os.environ, GAN_PROG=f"run_pipeline.sh ({name})")  # the step's errors are signed by this script and name it
        self.signalled = None
        self.child = subprocess.Popen(command, stdout=stdout, env=env, preexec_fn=in_child)
        _, status, usage = os.wait4(self.child.pid, 0)
        self.child.returncode = code = os.waitstatus_to_exitcode(status)
        self._wait_for_group(self.child.pid)
        self.child = None
        seconds, peak = time.perf_counter() - started, usage.ru_maxrss // 1024
        if self.signalled is not None:
            self._record(name, f"interrupted ({signal.Signals(self.signalled).name})", seconds, "-", shown)
            raise Stop(128 + self.signalled)  # the step printed the one line
        if code < 0:
            signame = signal.Signals(-code).name
            self._record(name, f"killed ({signame})", seconds, peak, shown)
            why = " (SIGKILL: the kernel's out-of-memory killer, or kill -9)" if code == -signal.SIGKILL else ""
            print(
                f"run_pipeline.sh: error: step {name} was killed by {signame}{why}; the workdir {self.workdir} holds the steps done before it",
                file=sys.stderr,
            )
            raise Stop(128 - code)
        timing = f"{name:<10} {seconds:7.2f} s  {str(peak) + ' MB':>8}"
        if code != 0:
            self._record(name, f"failed (exit {code})", seconds, peak, shown)
            if judgement and code == 1:
                self.timings.append(f"{timing}  (exit 1: see its line)")
                return 1
            raise Stop(code)  # the step printed its one line
        self._record(name, "ok", seconds, peak, shown)
        self.timings.append(timing)
        return 0

    @staticmethod
    def _wait_for_group(pgid):
        """Until every process of the step's group is gone (a worker may outlive the step's main process briefly)."""
        while True:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)


def main(args):
    pth = Path(args.pth)
    if not pth.is_file():
        raise InputError(f"{pth}: no such checkpoint (pass --pth FILE)")
    # Looked up, not imported: this process stays small, so that each step's peak memory is its own (a child's
    # high-water mark starts from what it inherits at fork).
    missing = [name for name in ("torch", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"the export and testdata steps need {' and '.join(missing)}, which {sys.executable} cannot import: pip install -r "
            f"requirements.txt (on an inference host with requirements-offline.txt, run the offline steps one by one, README section 5 on)"
        )
    if args.baseline is not None and not Path(args.baseline, "steps.tsv").is_file():
        raise InputError(f"{args.baseline}: --baseline is not a workdir of run_pipeline.sh (no steps.tsv in it)")
    workdir, lock = make_workdir(args.workdir)
    python = os.environ.get("PYTHON") or sys.executable
    log = workdir / f"GAN_bs{args.batch_size}.log"
    steps = Steps(workdir)
    print(f"== workdir: {workdir}", flush=True)
    total_start = time.perf_counter()
    try:
        step = steps.run
        step("export", [python, str(HERE / "GAN_pth2onnx.py"), f"--input_file={pth}", f"--output_file={workdir / 'GAN.onnx'}",
                        "--save_json", str(workdir / "export.json")])  # fmt: skip
        step("testdata", [python, str(HERE / "GAN_testdata.py"), f"--online_path={workdir / 'images'}",
                          f"--offline_path={workdir / 'vectors'}", f"--pth_path={pth}", "--iters", str(args.iters),
                          "--batch_size", str(args.batch_size), "--seed", str(args.seed),
                          "--save_json", str(workdir / "testdata.json")])  # fmt: skip
        # The runner's log is kept for the throughput step, as the guide keeps msame's in GAN_bs64.log.
        offline = ["bash", str(HERE / "run_msame.sh"), "--model", str(workdir / "GAN.onnx"), "--input", str(workdir / "vectors"),
                   "--output", str(workdir / "out"), "--outfmt", args.outfmt]  # fmt: skip
        with open(log, "w") as log_file:
            step("offline", offline, shown=f"{shlex.join(offline)} > {shlex.quote(str(log))}", stdout=log_file)
        print("".join(line for line in log.read_text().splitlines(keepends=True) if not line.startswith("Inference time:")), end="")
        step("txt2jpg", [python, str(HERE / "GAN_txt2jpg.py"), f"--txt_path={workdir / 'out'}",
                         f"--infer_results_path={workdir / 'genimg'}"])  # fmt: skip
        step("compare", [python, str(HERE / "GAN_compare.py"), f"--online_path={workdir / 'images'}",
                         f"--offline_path={workdir / 'out'}", "--diff_image", str(workdir / "compare_first_batch.png"), "--error_plot",
                         str(workdir / "compare_errors.png"), "--quiet",
                         "--save_json", str(workdir / "compare.json")])  # fmt: skip
        step("eval", [python, str(HERE / "GAN_eval.py"), "--images_path", str(workdir / "images"), "--images_path",
                      str(workdir / "out"), "--save_json", str(workdir / "eval.json")])  # fmt: skip
        step("perf", [python, str(HERE / "perf_calc.py"), "--log", str(log), "--save_json", str(workdir / "perf.json")])
        if args.sweep:
            step("sweep", [python, str(HERE / "perf_sweep.py"), "--model", str(workdir / "GAN.onnx"), "--output", str(workdir / "sweep")])
        judged = 0
        if args.baseline is not None:
            judged = step("regression", [python, str(HERE / "GAN_regression.py"), "--baseline", str(args.baseline), "--candidate",
                                         str(workdir), "--save_json", str(workdir / "regression.json")], judgement=True)  # fmt: skip
        step("report", [python, str(HERE / "GAN_report.py"), "--workdir", str(workdir)])
    except Stop as stop:
        sys.stdout.flush()
        os._exit(stop.code)  # the one line is printed; nothing is left to clean up (the lock goes with the process)
    install_signal_handlers()  # no step is running: a signal now ends the pipeline as any step's would
    total = time.perf_counter() - total_start
    sweep = "\n  sweep/                    the batch sweep: sweep.json, sweep.md, sweep.png" if args.sweep else ""
    print(f"""
== artefacts in {workdir}
  GAN.onnx                  the exported generator
  vectors/<i>.bin           latent vectors ({args.iters} x {args.batch_size} x 100 float32)
  images/<i>.bin, <i>.jpg   online PyTorch outputs and their grids
  out/<run>/                offline outputs ({args.outfmt}), {log} the runner's log
  genimg/<i>.jpg            offline grids
  compare_first_batch.png   online | offline | magnified difference, first batch
  compare_errors.png        the error against the reference's magnitude, and its histogram
  *.json, steps.tsv         each step's figures, and what ran (read by the report){sweep}
  report.html, report.md    one page with all of it
== time per step (and peak memory)""")
    for line in steps.timings:
        print(f"  {line}")
    print(f"  {'total':<10} {total:7.2f} s")
    print(f"== report: {workdir}/report.html")
    print(f"== report: {workdir}/report.md")
    lock.close()
    return judged  # 1: worse than the baseline, as the regression step's line said


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
