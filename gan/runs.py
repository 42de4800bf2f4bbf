"""Run folders: msame's interface (input folders, devices, output layout) and the run contract that readers check.

An output root holds one folder per run, as msame lays it out, and beside each run what this project adds,
under hidden names that sort before every run folder (upstream scripts take the last sorted entry of out/):

    out/<run>/                    output files only: <i>_output_0.txt|bin (msame), <i>_0.bin|txt|npy (ais_bench)
    out/.<run>.manifest.json      the run contract: status, tool, model, inputs, every output's size and sha256
    out/.<run>_summary.json       the runner's summary; out/.<run>.log a card run's combined log (msame_driver.py)

A run written by this project is *complete* when its manifest says "complete": the manifest is written with
status "running" before the first output, and rewritten last, after every output was written and counted,
with each output's size and sha256 (and those of the summary or log beside the folder). A run killed on
the way (SIGKILL, a full disk, a failing chip) stays "running" or "failed". Readers (open_run) resolve the
path they are given to its real path, take the newest run under a root by the runs' own start times (the
manifest's, or the time in a tool's folder name; never modification times), and stop with one line when
it is incomplete, empty, changed since it completed (a byte of any output), not a regular file, or when
the newest run cannot be told; they never fall back to an older run. A run folder with no manifest (msame
run by hand) is read as it is, and the reader says so.
"""

import argparse
import os
import re
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path

from gan.cli import InputError, ensure_dir, pid_alive
from gan.files import count_rows, file_digest, stale_part
from gan.records import MANIFEST, MANIFEST_FORMAT, parse_instant, read_atc_record, read_manifest, read_summary, write_json

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
    """(record, path) of the <output>.atc.json that atc_convert.sh wrote for this .om, checked against the .om on disk,
    or (None, None) for an .om converted some other way.

    The record names its .om and holds the .om's size and sha256: a record of another .om (or of an earlier
    conversion, the .om since replaced) is refused in one line, never trusted."""
    model = Path(model)
    stem = model.name[: -len(".om")] if model.name.endswith(".om") else model.stem
    candidates = [p for p in model.parent.glob("*.atc.json") if stem.startswith(p.name[: -len(".atc.json")])]
    for path in sorted(candidates, key=lambda p: (-len(p.name), p.name)):  # the longest prefix: GAN_bs16 before GAN_bs1
        record = read_atc_record(path)
        if record["om"]["name"] != model.name:
            continue  # the record of another .om (GAN_bs1.atc.json beside GAN_bs16.om)
        size, sha256 = file_digest(model, ".om model", follow_links=True)
        if (size, sha256) != (record["om"]["size"], record["om"]["sha256"]):
            raise InputError(
                f"{model}: does not match its record {path.name} (size {size:,} vs {record['om']['size']:,} bytes, sha256 "
                f"{sha256[:12]}... vs {record['om']['sha256'][:12]}...): the .om changed after atc_convert.sh converted it; "
                f"convert it again, or remove {path.name} if this .om was made another way"
            )
        return record, path
    return None, None


def list_output_files(folder):
    """{batch index: path} of the output files of model output 0 in `folder`; an output name that is not a regular
    file (a symbolic link, a folder, a pipe) is refused in one line."""
    found = {}
    try:
        entries = list(os.scandir(folder))
    except OSError as err:
        raise InputError(f"{folder}: cannot list the output folder: {err.strerror}") from None
    for entry in entries:
        match = OUTPUT_NAME.match(entry.name)
        if not match:
            continue
        if entry.is_symlink():
            raise InputError(
                f"{entry.path}: an output that is a symbolic link (to {os.readlink(entry.path)}): outputs must be the files the tool wrote"
            )
        if not entry.is_file(follow_symlinks=False):
            raise InputError(f"{entry.path}: named like an output but not a regular file")
        index = int(match.group(1))
        if index in found:
            raise InputError(f"{folder}: batch {index} has two output files: {found[index].name} and {entry.name}")
        found[index] = Path(entry.path)
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
            ... write outputs into run.dir, and files beside it ...
            run.complete(expected_names, beside=[summary_path])

    Leaving the block without complete() (an error, SIGINT, SIGTERM) marks the run "failed" with the reason;
    SIGKILL leaves it "running". Either way readers refuse it.
    """

    def __init__(self, output_root, **info):
        root = ensure_dir(output_root, "output folder")
        real = Path(os.path.realpath(root))
        has_manifest = os.path.lexists(manifest_path(real))
        if has_manifest or list_output_files(real):
            raise InputError(
                f"{root}: is a run folder itself (it holds outputs{' and has a manifest' if has_manifest else ''}): "
                f"pass its output root {real.parent} as --output; a new run never goes inside another"
            )
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
        write_json(manifest_path(self.dir), self.manifest, MANIFEST)

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

    def complete(self, expected_names, beside=(), **extra):
        """Count the outputs and record each one's size and sha256 (and those of the files `beside` the run folder that
        belong to it); mark the run complete only if the outputs are exactly `expected_names`."""
        present = {}
        for entry in os.scandir(self.dir):
            if not entry.is_file(follow_symlinks=False):
                raise InputError(f"{entry.path}: not a regular file in the run folder: the run cannot be completed")
            present[entry.name] = entry.path
        missing, unexpected = sorted(set(expected_names) - set(present)), sorted(set(present) - set(expected_names))
        if missing or unexpected or not present:
            raise InputError(
                f"{self.dir}: {len(present)} output files for {len(expected_names)} expected"
                + (f" (missing {', '.join(missing[:5])})" if missing else "")
                + (f" (unexpected {', '.join(unexpected[:5])})" if unexpected else "")
            )
        outputs = {name: _digest(path) for name, path in sorted(present.items())}
        self.manifest.update(status="complete", finished=_now(), output_count=len(outputs), outputs=outputs, **extra)
        if beside:
            self.manifest["beside"] = {Path(p).name: _digest(p) for p in beside}
        self._write()
        self.completed = True


def _digest(path):
    size, sha256 = file_digest(path, "output file")
    return {"size": size, "sha256": sha256}


def _now():
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------------------
# Reading a run: the newest one, by what runs say of themselves, checked against its manifest.


class OpenRun:
    """A run folder a reader may use: its outputs {batch index: path}, its manifest (or None) and a note saying which
    folder was used and how it was checked."""

    def __init__(self, path, outputs, manifest, note):
        self.path, self.outputs, self.manifest, self.note = path, outputs, manifest, note


def open_run(path):
    """The run to read under `path`: `path` itself if it is a run folder, else the newest run folder under it.

    `path` is first resolved to its real path, so a link to a run folder, or `.` inside one, is read as that run
    folder, manifest included. Refused in one line: an incomplete, failed, empty or since-changed run (never an
    older run instead), a root whose newest run cannot be told (a run folder named with no time, two runs of the
    same time), a link among the runs of a root, and a root holding loose output files beside run folders.
    """
    given = Path(path)
    real = Path(os.path.realpath(given))
    if not real.is_dir():
        raise InputError(f"{given}: no such output folder")
    if os.path.lexists(manifest_path(real)):
        return _checked(real, read_manifest(manifest_path(real)))
    loose = list_output_files(real)
    runs = _runs_under(real)
    if loose and runs:
        raise InputError(
            f"{real}: holds output files itself and run folders ({runs[-1][0].name} the newest): pass the run folder you "
            f"mean, or move the loose files away"
        )
    if loose:
        return _checked(real, None)
    if not runs:
        raise InputError(f"{real}: no output files (<i>_output_0.txt|bin or <i>_0.txt|bin|npy) in it or in a run folder under it")
    return _checked(*runs[-1])


def run_summary(output_root):
    """(the newest complete run under output_root, the runner's summary beside it, checked with the run as its
    manifest lists it; None when another tool ran it)."""
    run = open_run(output_root)
    path = beside_run(run.path, "_summary.json")
    if not (run.manifest and path.name in (run.manifest.get("beside") or {})):
        return run, None
    return run, read_summary(path)  # its sha256 was checked with the run


def _runs_under(root):
    """[(run folder, its manifest or None)] under an output root, oldest first, ordered by what each says of itself: its manifest's start time,
    or the time in its folder name (msame's and ais_bench's). Never by modification times, which a copy changes.

    A run is a folder named like a run folder or holding output files, or one that a manifest names (even if
    the folder is gone). When the newest cannot be told, the reader is refused rather than guessing."""
    times, manifests = {}, {}
    try:
        entries = list(os.scandir(root))
    except OSError as err:
        raise InputError(f"{root}: cannot list the output folder: {err.strerror}") from None
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".manifest.json"):
            run_dir = Path(root) / entry.name[1 : -len(".manifest.json")]
            manifest = read_manifest(entry.path)
            manifests[run_dir] = manifest
            started = parse_instant(manifest["started"])  # aware: checked by the manifest's reader
            times[run_dir] = (started, started)
        elif not entry.name.startswith(".") and entry.is_dir():  # follows links, to refuse them below
            if not (RUN_NAME.match(entry.name) or list_output_files(entry.path)):
                continue
            if entry.is_symlink():
                raise InputError(
                    f"{entry.path}: a symbolic link among the run folders (to {os.readlink(entry.path)}): pass the run "
                    f"folder itself, or remove the link"
                )
            times.setdefault(Path(entry.path), _name_times(entry.name))
    untimed = sorted(run.name for run, span in times.items() if span is None)
    if untimed and len(times) > 1:
        raise InputError(
            f"{root}: cannot tell which run is newest: {untimed[0]} holds outputs but no manifest and no time in its name; "
            f"pass the run folder you mean"
        )
    ordered = sorted(times, key=lambda run: (times[run][0], run.name)) if not untimed else list(times)
    if len(ordered) > 1:
        newest, *others = ordered[::-1]
        rival = next((run for run in others if times[run][1] >= times[newest][0]), None)
        if rival is not None:
            raise InputError(
                f"{root}: cannot tell which run is newest: {newest.name} and {rival.name} may have started at the same time "
                f"(msame's folder names are unpadded, so some read two ways); pass the run folder you mean"
            )
    return [(run, manifests.get(run)) for run in ordered]


MSAME_UNPADDED = re.compile(r"^(\d{4})(\d{1,4})_(\d{1,2})_(\d{1,2})_(\d{1,2})_(\d{1,6})$")
PADDED = re.compile(r"^(\d{8})_(\d{6})(?:_(\d{1,6}))?$")
AIS_BENCH = re.compile(r"^(\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2})$")


def _name_times(name):
    """(earliest, latest) instant a run folder's name can mean (aware datetimes), or None for a name with no time in it.

    The tools name folders by local time with no offset: each reading is taken in this host's time zone, at both
    sides of a daylight-saving change where the hour occurs twice. msame since 2021-09 writes YYYY, M and D
    unpadded (2021111 is 2021-1-11 or 2021-11-1): every valid reading counts. Ours and msame 2021-01..09:
    %Y%m%d_%H%M%S with microseconds or a loop index after it; ais_bench: %Y_%m_%d-%H_%M_%S."""
    readings = []
    try:
        if match := PADDED.match(name):
            moment = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
            readings.append(moment + timedelta(microseconds=int(match.group(3) or 0)))
        elif match := AIS_BENCH.match(name):
            readings.append(datetime.strptime(match.group(1), "%Y_%m_%d-%H_%M_%S"))
    except ValueError:
        return None
    if match := MSAME_UNPADDED.match(name):
        year, month_day, hour, minute, second, micro = match.groups()
        for cut in (1, 2):
            month, day = month_day[:cut], month_day[cut:]
            if not day or len(day) > 2 or month.startswith("0") or day.startswith("0"):
                continue
            try:
                readings.append(datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), int(micro)))
            except ValueError:
                continue
    instants = []
    for reading in readings:
        try:
            instants += [reading.replace(fold=fold).astimezone() for fold in (0, 1)]
        except (OverflowError, ValueError, OSError):  # year 1 or 9999 at the edge of the time zone's range
            continue
    return (min(instants), max(instants)) if instants else None


def _checked(run_dir, manifest):
    if manifest is None:
        outputs = list_output_files(run_dir)
        if not outputs:
            raise InputError(
                f"{run_dir}: the newest run folder holds no output files (the tool wrote nothing): run the offline step "
                f"again, or pass an older run folder yourself"
            )
        return OpenRun(
            run_dir,
            outputs,
            None,
            f"{run_dir} (no manifest: not written by this project, e.g. msame run by hand; read as it is, {len(outputs)} output files)",
        )
    manifest_file = manifest_path(run_dir)
    status = manifest["status"]
    if status != "complete":
        written = len(list_output_files(run_dir)) if run_dir.is_dir() else 0
        started = f"started {manifest['started']} by pid {manifest['pid']}"
        if status == "running" and manifest["host"] == socket.gethostname() and pid_alive(manifest["pid"]):
            why = f"still running ({started})"
        elif status == "running":
            why = f"never completed ({started}, which is gone: killed, or stopped where it could not even record why, e.g. a full disk)"
        else:
            why = f"{status} ({manifest.get('error', 'no reason recorded')})"
        raise InputError(
            f"{run_dir}: incomplete run, {why}; {written} of {manifest.get('inputs', '?')} outputs present: run the offline step again"
        )
    if manifest["run"] != run_dir.name:
        raise InputError(f"{manifest_file}: the manifest of run {manifest['run']!r}, not of {run_dir.name}: the run cannot be checked")
    if not os.path.isdir(run_dir) or os.path.islink(run_dir):
        raise InputError(f"{run_dir}: the run folder named by {manifest_file.name} is missing (or not a folder)")
    listed = manifest.get("outputs") or {}
    if not listed:
        raise InputError(f"{manifest_file}: a complete run with no outputs recorded: nothing to read; run the offline step again")
    present = {}
    for entry in os.scandir(run_dir):
        if entry.name not in listed and not stale_part(entry.name):  # what a killed writer left is no output
            raise InputError(
                f"{entry.path}: not in the run's manifest: the folder changed after the run completed; run the offline step again"
            )
        if entry.name in listed:
            present[entry.name] = entry.path
    for name, recorded in list(listed.items()) + list((manifest.get("beside") or {}).items()):
        path = run_dir / name if name in listed else run_dir.parent / name
        if name in listed and name not in present:
            raise InputError(
                f"{path}: listed in the run's manifest but missing: the run changed after it completed; run the offline step again"
            )
        actual = _digest(path)
        if actual != recorded:
            what = f"{actual['size']:,} bytes" if actual["size"] != recorded["size"] else "the same size but other content (sha256)"
            raise InputError(
                f"{path}: {what}, not what the run's manifest recorded ({recorded['size']:,} bytes, sha256 {recorded['sha256'][:12]}...): "
                f"the file changed after the run completed; run the offline step again"
            )
    outputs = list_output_files(run_dir)
    return OpenRun(
        run_dir,
        outputs,
        manifest,
        f"{run_dir} (complete run of {manifest['tool']}: {len(outputs)} output files checked against its manifest, size and sha256)",
    )
