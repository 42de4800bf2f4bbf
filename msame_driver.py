"""Drive the real msame (or ais_bench) for a .om model, and believe only what its log and its outputs show.

    bash run_msame.sh --model GAN_bs64.om --input vectors --output out --outfmt TXT                 # one chip
    bash run_msame.sh --model GAN_bs64.om --input vectors --output out --outfmt TXT --device 0,1,2,3 # a 310 card
    bash run_msame.sh --model GAN_bs64.om --input vectors --output out --tool ais_bench

msame exits 0 after many errors and, in folder mode, skips a file that fails to execute. So a run
counts as a success only when every device's log says "Execute sample success" (ais_bench: exit 0 and
its performance summary), no line starts with [ERROR], and there is exactly one output file per input
file. Each device gets its share of the input files (symlinked into a staging folder) and its own
output root, where the run folder the tool made is found by comparing the listing before and after
(msame's naming changed across versions). The run folder <output>/<YYYYmmdd_HHMMSS_microseconds>/ and its
manifest (status "running") are made first; only when every device succeeded are the outputs moved into
it and the manifest marked complete (gan/runs.py). Otherwise the run is marked failed and everything stays
in <output>/.<run>.staging/. The tools die with the driver (SIGTERM or SIGKILL), leaving the run
incomplete. The combined log (each device's lines with a [device N] prefix, its average lines renamed "device average
time", then a card summary with msame's average line, once, that perf_calc.py and upstream's grep read) is
printed and kept as <output>/.<run>.log.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gan.cli import HelpFormatter, InputError, die_with_parent, non_negative_int, outfmt, positive_int, refuse_overlap, run_main
from gan.files import LATENT_DIM, count_output_images, read_regular, write_bytes_atomic
from gan.perf import DECIMAL, card_chips, latency_stats, stats_lines
from gan.records import MAX_RECORD_BYTES
from gan.runs import Run, active_devices, atc_record, beside_run, check_input, list_inputs, parse_devices

AVERAGE = re.compile(r"^Inference average time\s*:\s*(" + DECIMAL + r")\s*ms", re.M)
PER_RUN = re.compile(r"^Inference time:\s*(" + DECIMAL + r")\s*ms", re.M)
DEVICE_AVERAGE = re.compile(r"^(\[INFO\]\s*)?Inference average time")


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\nUnknown flags (--debug, ...) are passed to the tool.",
    )
    parser.add_argument("--model", required=True, help="the .om model")
    parser.add_argument("--input", required=True, help="folder of input .bin files")
    parser.add_argument("--output", required=True, help="output root")
    parser.add_argument(
        "--outfmt", type=outfmt, choices=["TXT", "BIN", "NPY"], default="BIN", help="output format, any case (NPY: ais_bench only)"
    )
    parser.add_argument("--device", type=parse_devices, default=[0], help="device id or comma-separated list (0,1,2,3: a 310 card)")
    parser.add_argument("--tool", choices=["msame", "ais_bench"], default="msame", help="inference tool")
    parser.add_argument("--msame", default=None, help="msame executable (else $MSAME_BIN, ./msame, then PATH)")
    parser.add_argument("--features", type=positive_int, default=LATENT_DIM, help="float32 values per input row")
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=0,
        help="untimed executions first: ais_bench's --warmup_count; msame has none (a warning says so)",
    )
    parser.add_argument(
        "--loop",
        type=positive_int,
        default=1,
        help="executions of each batch: ais_bench's --loop; msame ignores it in folder mode (a warning says so)",
    )
    parser.add_argument(
        "--dymBatch",
        type=positive_int,
        default=None,
        help="the batch of a dynamic-batch model (atc_convert.sh --dynamic_batch_size): one of its gears; every "
        "input must hold that many rows, and every output is checked for as many images",
    )
    return parser


def find_msame(explicit):
    candidates = [("--msame", explicit), ("$MSAME_BIN", os.environ.get("MSAME_BIN")), ("./msame", "./msame")]
    for label, path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return [str(Path(path).resolve())]
        if path and label != "./msame":
            raise InputError(f"{path} (from {label}): no executable msame there")
    on_path = shutil.which("msame")
    if on_path:
        return [on_path]
    raise InputError(
        "msame not found (looked at --msame, $MSAME_BIN, ./msame and PATH): build it from Ascend/tools "
        "msame/ and pass --msame PATH, or use --tool ais_bench"
    )


def find_ais_bench():
    import importlib.util

    if importlib.util.find_spec("ais_bench") is None:
        raise InputError(
            f"ais_bench is not importable by {sys.executable}: install its wheel (Ascend/tools ais-bench_workload) or use --tool msame"
        )
    return [sys.executable, "-m", "ais_bench"]


def input_stem(tool, path):
    """msame cuts the input name at its last '.', ais_bench at its first."""
    return path.name.rsplit(".", 1)[0] if tool == "msame" else path.name.split(".")[0]


def output_name(tool, stem, outfmt):
    return f"{stem}_output_0.{outfmt.lower()}" if tool == "msame" else f"{stem}_0.{outfmt.lower()}"


def judge(tool, returncode, log, run_folders, stems, outfmt, rows):
    """(problems, {output file name: path}) for one device's run; `rows` is {stem: input rows}."""
    problems = []
    errors = [line for line in log.splitlines() if line.startswith("[ERROR]")]
    if errors:
        problems.append(f"{errors[0]} (and {len(errors) - 1} more [ERROR] lines)" if len(errors) > 1 else errors[0])
    if tool == "msame" and "Execute sample success" not in log:
        problems.append("no 'Execute sample success' in its log")
    if tool == "ais_bench" and (returncode != 0 or "NPU_compute_time" not in log):
        problems.append(f"exit {returncode}, no performance summary")
    if len(run_folders) != 1:
        problems.append(f"expected one new run folder, found {len(run_folders)}")
    found = {}
    for folder in run_folders:
        found.update({p.name: p for p in folder.iterdir() if p.is_file()})
    missing = [s for s in stems if output_name(tool, s, outfmt) not in found]
    if missing:
        problems.append(
            f"{len(stems) - len(missing)} outputs for {len(stems)} inputs (missing {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''})"
        )
    # A tool can write an output of the wrong size and still say success (msame with --dymBatch, in some versions)
    wrong = [(name, count_output_images(found[name]), rows[s]) for s in stems if (name := output_name(tool, s, outfmt)) in found]
    wrong = [(name, images, expected) for name, images, expected in wrong if images != expected]
    if wrong:
        name, images, expected = wrong[0]
        hint = (
            " (half the size: the model's output is fp16; convert with atc --output_type=FP32 or use --outfmt TXT)"
            if outfmt == "BIN" and images * 2 == expected
            else ""
        )
        problems.append(f"{len(wrong)} outputs with the wrong number of images ({name}: {images:g} images for {expected} input rows){hint}")
    return problems, found


def renamed_average(line):
    """A device's own average line in other words ("device average time"): the combined log holds msame's average line
    once, the card summary's, so that upstream's `grep "Inference average time : "` finds one figure, perf_calc's."""
    return DEVICE_AVERAGE.sub(r"\1device average time", line)


def card_summary(tool, logs, staging, batch):
    """Lines after the devices' logs, as perf_calc.py reads them: the card's average of one batch on one chip and,
    where the tools left per-call times (msame's "Inference time" lines, ais_bench's summary list), their
    distribution pooled over every device."""
    lines = [f"[INFO] card summary: {len(logs)} devices"]
    if tool == "msame":
        times = [float(t) for log in logs.values() for t in PER_RUN.findall(log)]
        if times:
            lines.append(f"Inference average time : {sum(times) / len(times):.6f} ms")
            if len(times) > 1:
                lines.append(f"Inference average time without first time: {sum(times[1:]) / (len(times) - 1):.6f} ms")
        else:  # per-run lines missing: fall back to the devices' own averages
            averages = [float(a) for log in logs.values() for a in AVERAGE.findall(log)]
            if averages:
                lines.append(f"Inference average time : {sum(averages) / len(averages):.6f} ms")
    else:
        times = []
        for device in logs:
            for summary in (staging / f"device{device}" / "out").glob("*_summary.json"):
                try:  # ais_bench's own file: a regular file of bounded size, a list of numbers, or no pooled figure
                    listed = json.loads(read_regular(summary, "ais_bench summary", MAX_RECORD_BYTES)).get("npu_compute_time_list", [])
                    times += [float(t) for t in listed if isinstance(t, (int, float)) and math.isfinite(t)]
                except (InputError, ValueError, TypeError, AttributeError, RecursionError):
                    pass  # an older ais_bench's summary without the list: no pooled distribution
    if len(times) >= 2:
        lines += stats_lines(latency_stats(times), batch)
    return lines


def start_tools(tool_command, args, model, shares, staging):
    """One tool process per device over its share (symlinked into its own input folder); {device: (process, log file)}."""
    # msame takes any --input containing ".bin" for a file: keep the symlink folders off such a path
    links_root = Path(tempfile.mkdtemp(prefix="gan_msame_inputs_", dir=None)) if ".bin" in str(staging) else staging
    if links_root != staging:
        (staging / "inputs_are_in").parent.mkdir(parents=True, exist_ok=True)
        (staging / "inputs_are_in").symlink_to(links_root)  # removed with the staging folder, see stop()
    driver_pid = os.getpid()
    processes = {}
    for device, share in shares.items():
        inputs, out = links_root / f"device{device}" / "input", staging / f"device{device}" / "out"
        inputs.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True)
        for path in share:
            (inputs / path.name).symlink_to(path.resolve())
        command = tool_command + [
            "--model",
            str(model.resolve()),
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--outfmt",
            args.outfmt,
            "--device",
            str(device),
            *measurement_flags(args),
            *(["--dymBatch", str(args.dymBatch)] if args.dymBatch else []),
            *getattr(args, "unknown", []),
        ]
        log_file = open(staging / f"device{device}.log", "w")
        processes[device] = (
            subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: die_with_parent(driver_pid)),
            log_file,
        )
        print(f"[INFO] device {device}: {len(share)} file(s): {shlex.join(command)}", flush=True)
    return processes


def measurement_flags(args):
    """--warmup and --loop in the tool's own words: ais_bench has both; msame has neither in folder mode."""
    if args.tool == "ais_bench":
        return ["--warmup_count", str(args.warmup), "--loop", str(args.loop)]
    return []


def remove_staging(staging):
    """The staging folder of a successful run, and the symlink folder outside it where there was one."""
    outside = staging / "inputs_are_in"
    if outside.is_symlink():
        shutil.rmtree(outside.resolve(), ignore_errors=True)
    shutil.rmtree(staging)


def stop(processes):
    """Terminate the tools still running (the driver is failing or was interrupted)."""
    for process, _ in processes.values():
        if process.poll() is None:
            process.terminate()
    for process, log_file in processes.values():
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()


def main(args):
    model, input_folder = Path(args.model), Path(args.input)
    if not model.is_file():
        raise InputError(f"{model}: no such .om model (make it with atc_convert.sh)")
    if not input_folder.is_dir():
        raise InputError(f"{input_folder}: not an input folder (the driver runs msame's folder mode: pass the folder of <i>.bin files)")
    if args.outfmt == "NPY" and args.tool == "msame":
        raise InputError("--outfmt NPY: msame writes TXT or BIN only (NPY is ais_bench's)")
    refuse_overlap([("--model", model), ("--input", input_folder)], [("--output", args.output)])
    tool_command = find_msame(args.msame) if args.tool == "msame" else find_ais_bench()
    files = list_inputs(input_folder)
    record, record_path = atc_record(model)
    gears = (record or {}).get("dynamic_batch_size")
    if gears and args.dymBatch is None:
        raise InputError(f"{model}: a dynamic-batch model (gears {','.join(map(str, gears))}, from {record_path.name}): pass --dymBatch N")
    if gears and args.dymBatch not in gears:
        raise InputError(f"--dymBatch {args.dymBatch}: not a gear of {model.name} ({','.join(map(str, gears))}, from {record_path.name})")
    if args.dymBatch is not None and args.dymBatch > 2048:
        raise InputError(f"--dymBatch {args.dymBatch}: at most 2048 (atc's largest gear)")
    rows = [check_input(path, args.features, args.dymBatch) for path in files]
    all_stems = [input_stem(args.tool, p) for p in files]
    rows_by_stem = dict(zip(all_stems, rows))
    if len(set(all_stems)) != len(all_stems):
        raise InputError(
            f"{input_folder}: two input files give the same output name (same name before the "
            f"{'last' if args.tool == 'msame' else 'first'} '.'): rename them"
        )
    if args.tool == "msame" and (args.warmup or args.loop > 1):
        print(
            f"[WARN] msame has no warm-up and ignores --loop in folder mode: --warmup {args.warmup} --loop {args.loop} "
            f"not applied; every batch is timed once (use --tool ais_bench for both)"
        )
    devices = active_devices(args.device, len(files))
    shares = {d: files[k :: len(devices)] for k, d in enumerate(devices)}

    with Run(
        args.output,
        tool=args.tool,
        model=str(model.resolve()),
        input=str(input_folder.resolve()),
        inputs=len(files),
        outfmt=args.outfmt,
        devices=devices,
    ) as run:
        staging = beside_run(run.dir, ".staging")
        processes = {}
        try:
            processes = start_tools(tool_command, args, model, shares, staging)
            logs, verdicts, outputs = {}, {}, {}
            for device, (process, log_file) in processes.items():
                returncode = process.wait()
                log_file.close()
                logs[device] = (staging / f"device{device}.log").read_text(errors="replace")
                out = staging / f"device{device}" / "out"
                run_folders = [p for p in out.iterdir() if p.is_dir()]  # the root was empty before: every folder is new
                stems = [input_stem(args.tool, p) for p in shares[device]]
                verdicts[device], outputs[device] = judge(
                    args.tool, returncode, logs[device], run_folders, stems, args.outfmt, rows_by_stem
                )
        finally:
            stop(processes)

        chip = f"chip {record['soc_version']}, from {record_path.name}" if record else "chip not recorded (no atc_convert.sh record)"
        combined = [f"[INFO] {args.tool} on {model.name} ({chip}), {len(files)} input file(s), devices {','.join(map(str, devices))}"]
        for device in devices:
            combined += [f"[device {device}] {renamed_average(line)}" for line in logs[device].splitlines()]
        combined += card_summary(args.tool, logs, staging, sum(rows) / len(rows))
        chips, rule = card_chips(args.tool, len(devices), record["soc_version"] if record else None)
        combined.append(f"[INFO] chips per card: {chips} ({rule})")
        failed = {d: v for d, v in verdicts.items() if v}
        if failed:
            combined += [f"[ERROR] device {d}: {'; '.join(v)}" for d, v in failed.items()]
            write_bytes_atomic(staging / "run.log", ("\n".join(combined) + "\n").encode())
            print("\n".join(combined))
            raise InputError(
                f"{args.tool} failed on device(s) {', '.join(map(str, failed))}: {'; '.join(failed[min(failed)])}; "
                f"run {run.dir.name} marked failed, logs and partial outputs kept in {staging}"
            )

        beside = []
        for device in devices:
            for name, path in outputs[device].items():
                if (run.dir / name).exists():
                    raise InputError(f"{run.dir / name}: two devices wrote the same output name")
                os.replace(path, run.dir / name)
            for summary in (staging / f"device{device}" / "out").glob("*_summary.json"):  # ais_bench's, beside its folder
                beside.append(beside_run(run.dir, f".device{device}_summary.json"))
                os.replace(summary, beside[-1])
        expected = [output_name(args.tool, stem, args.outfmt) for stem in all_stems]
        combined += [
            f"[INFO] {len(expected)} outputs for {len(files)} inputs, gathered in {run.dir}",
            str(run.dir),
            "[INFO] Execute sample success (every device's log and output checked)",
        ]
        log_path = beside_run(run.dir, ".log")
        write_bytes_atomic(log_path, ("\n".join(combined) + "\n").encode())
        try:
            run.complete(expected, beside=[log_path, *beside])  # the log, written first, is recorded with the outputs
        except BaseException:
            log_path.unlink(missing_ok=True)  # no log saying success beside a run that is not complete
            raise
    remove_staging(staging)
    print("\n".join(combined))
    print(f"[INFO] log kept in {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser(), pass_unknown=True))
