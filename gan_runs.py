"""Run folders: msame's interface (input folders, devices, output layout) and the run contract that readers check.

An output root holds one folder per run, as msame lays it out, and beside each run what this project adds,
under hidden names that sort before every run folder (upstream scripts take the last sorted entry of out/):

    out/<run>/                    output files only: <i>_output_0.txt|bin (msame), <i>_0.bin|txt|npy (ais_bench)
    out/.<run>.manifest.json      the run contract: status, tool, model, inputs, every output file and its size
    out/.<run>.log                a card run's combined log (msame_driver.py)

A run written by this project is *complete* when its manifest says "complete": the manifest is written with
status "running" before the first output, and rewritten last, after every output was written and counted,
with each output's name and size. A run killed on the way (SIGKILL, a full disk, a failing chip) stays
"running" or "failed". Readers (open_run) take the newest run under a root and stop with one line when it
is incomplete, empty, or changed since it completed; they never fall back to an older run. A run folder
with no manifest (msame run by hand) is read as it is, and the reader says so.
"""

import argparse
import json
import os
import re
import socket
import time
from datetime import datetime
from pathlib import Path

from gan_cli import InputError, ensure_dir, pid_alive
from gan_io import count_rows, write_bytes_atomic

MANIFEST_FORMAT = "gan-offline-run/1"
# <i>_output_0.txt (msame folder mode) or <i>_0.bin (ais_bench): the batch index is the whole leading number.
OUTPUT_NAME = re.compile(r"^(\d+)(?:_output)?_0\.(txt|bin|npy)$")
# Run folder names: ours (20261126_101500_123456), msame since 2021-09 (2021926_8_7_6_12345), msame
# 2021-01..09 (20210905_080706, with _<loop> before 2021-01), ais_bench (2023_01_03-06_35_53).
RUN_NAME = re.compile(r"^(\d{8}_\d{6}(_\d+)?|\d{5,8}_\d{1,2}_\d{1,2}_\d{1,2}_\d{1,6}|\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2})$")


# ---------------------------------------------------------------------------------------------------------
# msame's interface: input folders and device lists (shared by the ONNX Runtime runner and the driver).


def parse_devices(text):
    try:
        devices = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device id or a comma-separated list such as 0,1,2,3, got {text!r}") from None
    if any(not 0 <= d <= 255 for d in devices) or len(set(devices)) != len(devices):
        raise argparse.ArgumentTypeError(f"expected distinct device ids in 0..255, got {text!r}")
    return devices


def active_devices(devices, file_count):
    """The devices that get files: a device with no file is not a chip in any figure."""
    used = devices[:file_count]
    if len(used) < len(devices):
        print(
            f"[WARN] {len(devices)} devices for {file_count} input file(s): devices "
            f"{','.join(map(str, devices[file_count:]))} get no file and are not counted"
        )
    return used


def check_input(path, features, fixed_batch):
    """Rows in an input file, refusing a size that is not a whole number of rows (or not the model's batch)."""
    rows = count_rows(path, features, "input file")
    try:
        with open(path, "rb"):  # unreadable inputs are refused before the run starts, not halfway through it
            pass
    except OSError as err:
        raise InputError(f"{path}: cannot read input file: {err.strerror}") from None
    if fixed_batch is not None and rows != fixed_batch:
        raise InputError(f"{path}: {rows} rows, but the model takes batches of exactly {fixed_batch}")
    return rows


def list_inputs(input_path):
    """msame's folder mode: the non-hidden entries of the folder, sorted by name."""
    folder = Path(input_path)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such input folder")
    try:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise InputError(f"{folder}: cannot list the input folder: {err.strerror}") from None
    if not files:
        raise InputError(f"{folder}: the input folder is empty (expected <i>.bin files from GAN_testdata.py)")
    not_files = [p.name for p in files if not p.is_file()]
    if not_files:
        raise InputError(f"{folder}: expected only input files, found folder {not_files[0]}")
    return files


def atc_record(model):
    """(record, path) of the <output>.atc.json that atc_convert.sh wrote beside this .om (command, input, batch or
    dynamic gears, chip, precision), or (None, None) for an .om converted some other way."""
    model = Path(model)
    stem = model.name[: -len(".om")] if model.name.endswith(".om") else model.stem
    for path in sorted(model.parent.glob("*.atc.json"), key=lambda p: -len(p.name)):
        if stem.startswith(path.name[: -len(".atc.json")]):  # atc may have added a suffix such as _linux_x86_64
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                raise InputError(f"{path}: not a readable record of atc_convert.sh (JSON expected)") from None
            return (record if isinstance(record, dict) else None), path
    return None, None


def list_output_files(folder):
    """{batch index: path} of the output files of model output 0 in `folder`."""
    found = {}
    try:
        entries = list(Path(folder).iterdir())
    except OSError as err:
        raise InputError(f"{folder}: cannot list the output folder: {err.strerror}") from None
    for path in entries:
        match = OUTPUT_NAME.match(path.name)
        if match and path.is_file():
            index = int(match.group(1))
            if index in found:
                raise InputError(f"{folder}: batch {index} has two output files: {found[index].name} and {path.name}")
            found[index] = path
    return found


# ---------------------------------------------------------------------------------------------------------
# Writing a run: the manifest first ("running"), the outputs, then the manifest again ("complete").


def manifest_path(run_dir):
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.manifest.json"


def beside_run(run_dir, suffix):
    """A file this project keeps beside a run folder, hidden: out/.<run><suffix>."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}{suffix}"


class Run:
    """A new run folder <output>/<YYYYmmdd_HHMMSS_microseconds>/ under the run contract.

        with Run(output, tool="onnxruntime", model=..., input=..., inputs=N, outfmt="TXT", devices=[0]) as run:
            ... write outputs into run.dir ...
            run.complete(expected_names)

    Leaving the block without complete() (an error, SIGINT, SIGTERM) marks the run "failed" with the reason;
    SIGKILL leaves it "running". Either way readers refuse it.
    """

    def __init__(self, output_root, **info):
        root = ensure_dir(output_root, "output folder")
        while True:  # names sort by time; an existing folder is never reused
            self.dir = root / datetime.now().strftime("%Y%m%d_%H%M%S_%f")
            try:
                self.dir.mkdir()
                break
            except FileExistsError:
                time.sleep(1e-6)
            except OSError as err:
                raise InputError(f"{self.dir}: cannot create the run folder: {err.strerror}") from None
        self.manifest = {
            "format": MANIFEST_FORMAT,
            "status": "running",
            "run": self.dir.name,
            **info,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _now(),
        }
        self._write()
        self.completed = False

    def _write(self):
        write_bytes_atomic(manifest_path(self.dir), (json.dumps(self.manifest, indent=1) + "\n").encode())

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if not self.completed and kind is not None:
            self.manifest.update(status="failed", error=f"{kind.__name__}: {error}"[:500], finished=_now())
            try:
                self._write()
            except (InputError, OSError):
                pass  # a full disk: the manifest stays "running", which readers refuse as well
        return False

    def complete(self, expected_names, **extra):
        """Count the outputs; mark the run complete only if they are exactly `expected_names`."""
        present = {p.name: p.stat().st_size for p in self.dir.iterdir() if not p.name.startswith(".")}
        missing, unexpected = sorted(set(expected_names) - set(present)), sorted(set(present) - set(expected_names))
        if missing or unexpected:
            raise InputError(
                f"{self.dir}: {len(present)} output files for {len(expected_names)} expected"
                + (f" (missing {', '.join(missing[:5])})" if missing else "")
                + (f" (unexpected {', '.join(unexpected[:5])})" if unexpected else "")
            )
        self.manifest.update(status="complete", finished=_now(), output_count=len(present), outputs=dict(sorted(present.items())), **extra)
        self._write()
        self.completed = True


def _now():
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------------------
# Reading a run: the newest one, checked against its manifest.


class OpenRun:
    """A run folder a reader may use: its outputs {batch index: path}, its manifest (or None) and a note saying which
    folder was used and how it was checked."""

    def __init__(self, path, outputs, manifest, note):
        self.path, self.outputs, self.manifest, self.note = path, outputs, manifest, note


def open_run(path):
    """The run to read under `path`: `path` itself if it is a run folder, else the newest run folder under it.

    Refused in one line: an incomplete, failed, empty or since-changed newest run (never an older run
    instead), and a root that holds loose output files beside run folders (which of them is meant?).
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such output folder")
    if manifest_path(path).exists():
        return _checked(path)
    loose = list_output_files(path)
    runs = _runs_under(path)
    if loose and runs:
        raise InputError(
            f"{path}: holds output files itself and run folders ({runs[-1][1].name} the newest): pass the "
            f"run folder you mean, or move the loose files away"
        )
    if loose:
        return _checked(path)
    if not runs:
        raise InputError(f"{path}: no output files (<i>_output_0.txt|bin or <i>_0.txt|bin|npy) in it or in a run folder under it")
    return _checked(runs[-1][1])


def _runs_under(root):
    """[(last activity, run folder)] of the runs under an output root, oldest first.

    A run is a folder named like a run folder, or holding output files, or one that a manifest names (even
    if the folder is gone). Newest by modification time, not by name: msame's names are unpadded.
    """
    runs = {}
    try:
        entries = list(os.scandir(root))
    except OSError as err:
        raise InputError(f"{root}: cannot list the output folder: {err.strerror}") from None
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".manifest.json"):
            run_dir = Path(root) / entry.name[1 : -len(".manifest.json")]
            runs[run_dir] = max(runs.get(run_dir, 0), _mtime(entry.path))
        elif not entry.name.startswith(".") and entry.is_dir() and (RUN_NAME.match(entry.name) or list_output_files(entry.path)):
            runs[Path(entry.path)] = max(runs.get(Path(entry.path), 0), _mtime(entry.path))
    return sorted(((when, run_dir) for run_dir, when in runs.items()), key=lambda item: (item[0], item[1].name))


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _checked(run_dir):
    manifest_file = manifest_path(run_dir)
    if not manifest_file.exists():
        outputs = list_output_files(run_dir)
        if not outputs:
            raise InputError(
                f"{run_dir}: the newest run folder holds no output files (the tool wrote nothing): run the "
                f"offline step again, or pass an older run folder yourself"
            )
        return OpenRun(
            run_dir,
            outputs,
            None,
            f"{run_dir} (no manifest: not written by this project, e.g. msame run by hand; read as it is, {len(outputs)} output files)",
        )
    manifest = _read_manifest(manifest_file)
    status = manifest.get("status")
    if status != "complete":
        written = len(list_output_files(run_dir)) if run_dir.is_dir() else 0
        started = f"started {manifest.get('started', '?')} by pid {manifest.get('pid', '?')}"
        if status == "running" and manifest.get("host") == socket.gethostname() and pid_alive(manifest.get("pid")):
            why = f"still running ({started})"
        elif status == "running":
            why = f"never completed ({started}, which is gone: killed, or stopped where it could not even record why, e.g. a full disk)"
        else:
            why = f"{status} ({manifest.get('error', 'no reason recorded')})"
        raise InputError(
            f"{run_dir}: incomplete run, {why}; {written} of {manifest.get('inputs', '?')} outputs present: run the offline step again"
        )
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: the run folder named by {manifest_file.name} is missing")
    outputs = list_output_files(run_dir)
    listed = manifest.get("outputs", {})
    for name, size in listed.items():
        try:
            actual = (run_dir / name).stat().st_size
        except OSError:
            raise InputError(
                f"{run_dir / name}: listed in the run's manifest but missing: the run changed after it "
                f"completed; run the offline step again"
            ) from None
        if actual != size:
            raise InputError(
                f"{run_dir / name}: {actual} bytes, but the run's manifest recorded {size}: the file changed after the run completed"
            )
    unlisted = sorted(p.name for p in outputs.values() if p.name not in listed)
    if unlisted:
        raise InputError(
            f"{run_dir}: output files not in the run's manifest ({', '.join(unlisted[:3])}): the folder changed after the run completed"
        )
    return OpenRun(
        run_dir,
        outputs,
        manifest,
        f"{run_dir} (complete run of {manifest.get('tool', '?')}: {len(outputs)} output files checked against its manifest)",
    )


def _read_manifest(path):
    try:
        manifest = json.loads(path.read_bytes())
    except OSError as err:
        raise InputError(f"{path}: cannot read the run's manifest: {err.strerror}") from None
    except ValueError:
        raise InputError(f"{path}: not a readable run manifest (not JSON): the run cannot be checked") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a run manifest of this project (format {MANIFEST_FORMAT} expected)")
    return manifest
