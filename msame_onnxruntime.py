"""msame's interface, output layout and log lines, on ONNX Runtime: the offline step on a host with no Ascend NPU.

    python msame_onnxruntime.py --model GAN.onnx --input vectors --output out --outfmt TXT

Folder mode (--input is a folder): every non-hidden file of the folder, in sorted name order, is one batch;
its output goes to <output>/<run folder>/<name without extension>_output_0.txt|.bin. File mode (--input is
a file): that file is run --loop times and its output written once, named after the model, as msame does.
The mode is decided by what the path is (msame looks for ".bin" in it, which misreads a folder such as
a.binaries/vectors). The TXT format is msame's (6 significant digits, a space after every value, a newline
after every row of 28 values); BIN is raw float32. Only the model execution is timed, as msame times
aclmdlExecute. --device 0,1,... runs one worker process per listed device over its share of the files and
gathers every output into one run folder; the workers die with the runner. The run folder is written under
the run contract (gan/runs.py): complete only once every output is written and counted.

Measurement, as ais_bench does it: --warmup N executions before timing starts (excluded from every
figure), --loop N executions of each batch in folder mode too (outputs written once). After msame's lines
the log has an ais_bench-style block (min, max, mean, median, percentile(90%) and (99%), throughput) per
worker and for the card, and <output>/.<run>_summary.json holds the same figures in ais_bench's summary
layout. The intra-op thread count is chosen by a short measurement at start-up on the first batch (a slice
of it that fits about 100 ms, each candidate timed in a few blocks, the fastest kept and printed; when the
candidates do not separate beyond their noise, every core of the worker, and the log says so); --threads N
fixes it. The model is read with its own folder (external data) and its input and outputs checked, and
the memory a batch needs is checked, before anything is written. Needs numpy and onnxruntime only.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from gan.cli import (
    HelpFormatter,
    InputError,
    Interrupted,
    check_memory,
    describe_os_error,
    die_with_parent,
    install_signal_handlers,
    non_negative_int,
    one_line,
    outfmt,
    positive_int,
    progress,
    refuse_overlap,
    run_main,
)
from gan.files import format_msame_txt, one_line_reason, read_bytes, write_bytes_atomic
from gan.onnx_models import model_signature, onnx_session, read_model
from gan.perf import (
    MachineLoad,
    block_spread,
    cpu_features,
    describe_cpu,
    describe_load,
    describe_spread,
    latency_stats,
    stats_lines,
    unstable_reasons,
    versions,
)
from gan.records import SUMMARY, write_json
from gan.runs import Run, active_devices, beside_run, check_input, list_inputs, parse_devices

RUNNER_MARKER = "[INFO] ONNX Runtime runner with msame's interface"


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--model", "--om", required=True, help="ONNX model (GAN.onnx); --om is ais_bench's name")
    parser.add_argument("--input", "-i", required=True, help="folder of input .bin files (folder mode) or one .bin file (file mode)")
    parser.add_argument("--output", "-o", required=True, help="output root; each run writes into a new run folder under it")
    parser.add_argument("--outfmt", type=outfmt, choices=["TXT", "BIN"], default="BIN", help="output file format, any case (default: BIN)")
    parser.add_argument(
        "--loop",
        "-l",
        type=positive_int,
        default=1,
        help="executions of each batch (file mode: 1..100, msame's range); outputs are written once (default: 1)",
    )
    parser.add_argument(
        "--warmup",
        "--warmup_count",
        type=non_negative_int,
        default=0,
        help="executions per worker before timing starts, excluded from every figure (default: 0, as msame)",
    )
    parser.add_argument(
        "--device",
        "-d",
        "--device_id",
        type=parse_devices,
        default=[0],
        help="device id, or a comma-separated list: one worker process per device, files split between them",
    )
    parser.add_argument(
        "--threads",
        type=non_negative_int,
        default=0,
        help="ONNX Runtime intra-op threads per worker (default 0: chosen by measurement at start-up)",
    )
    parser.add_argument(
        "--dymBatch",
        type=positive_int,
        default=None,
        help="msame's and ais_bench's batch of a dynamic-batch model: every input must hold that many rows",
    )
    tools = parser.add_argument_group(
        "msame's and ais_bench's other flags",
        f"{', '.join(IGNORED_FLAGS)} VALUE and --display_all_summary [VALUE]: accepted so that a command written for either "
        f"tool runs unchanged; they have no meaning on ONNX Runtime, and the log says that they were ignored",
    )
    for flag in IGNORED_FLAGS:
        tools.add_argument(flag, default=None, help=argparse.SUPPRESS)
    tools.add_argument("--display_all_summary", default=None, nargs="?", const="true", metavar="VALUE", help=argparse.SUPPRESS)
    return parser


# msame's (--debug, --profiler, --dump, --dymHW, --dymDims, --dymShape, --outputSize) and ais_bench's other flags: the
# profiling, dumps, ACL config and shape options of an NPU run, and ais_bench's --batchsize, which it uses only for its
# throughput figure (the runner reads the batch from the inputs).
IGNORED_FLAGS = (
    "--debug",
    "--profiler",
    "--dump",
    "--dymHW",
    "--dymDims",
    "--dymShape",
    "--outputSize",
    "--batchsize",
    "--pure_data_type",
    "--acl_json_path",
    "--run_mode",
    "--output_batchsize_axis",
    "--auto_set_dymdims_mode",
    "--auto_set_dymshape_mode",
)


def ignored_flags(args):
    """`--debug true, --batchsize 16`: the tools' flags given that have no meaning here, for the log."""
    given = [(flag, getattr(args, flag[2:])) for flag in (*IGNORED_FLAGS, "--display_all_summary")]
    return ", ".join(f"{flag} {one_line(value)[:40]}" for flag, value in given if value is not None)


def thread_candidates(workers=1):
    """Thread counts worth trying per worker: 1, powers of two, and every core the worker may use."""
    most = max(1, (os.cpu_count() or 1) // workers)
    return sorted({1, most} | {2**k for k in range(1, most.bit_length()) if 2**k < most})


PROBE_BUDGET_MS = 45.0  # the timed part of the start-up thread choice; creating the candidates' sessions comes on top
PROBE_CYCLES, PROBE_UNTIMED = 3, 3


class ThreadChoice:
    """How the thread count was chosen: timings per candidate (best block, ms per call), the rows they ran on, the
    wall time of the choice, and whether the candidates separated beyond their noise."""

    def __init__(self, threads, best, spread, rows, of_rows, seconds, separated, rows_run):
        self.threads, self.best, self.spread, self.rows, self.of_rows = threads, best, spread, rows, of_rows
        self.seconds, self.separated, self.rows_run = seconds, separated, rows_run

    def describe(self):
        timings = ", ".join(f"{t}: {ms:.4f} ms (+{self.spread[t]:.0%})" for t, ms in sorted(self.best.items()))
        how = (
            "chosen by measurement at start-up"
            if self.separated
            else "the default, every core of the worker: the candidates did not separate beyond their noise"
        )
        return f"{self.threads} ({how}; {self.seconds * 1000:.0f} ms on {self.rows} of {self.of_rows} rows, per call: {timings})"


def choose_threads(model, batch, candidates, ready=None, budget_ms=PROBE_BUDGET_MS):
    """(session, ThreadChoice): each candidate's session timed on (a slice of) `batch`, the fastest kept, at a cost
    bounded by `budget_ms` whatever the batch's size. `ready` holds sessions already made ({threads: session}).

    The slice is as many rows of the batch as fit the budget (all of them for the guide's batches): one call on
    a few rows gives the cost per row, from which the rows are chosen so that every candidate gets PROBE_CYCLES
    blocks of PROBE_UNTIMED untimed calls (a session is slow for 2-3 calls after another one ran) and at least 3
    timed ones. A candidate's figure is its best block; its noise, its median block over its best. When the
    best two do not differ by more than their noise (a loaded machine), the choice falls back to the default,
    every core of the worker, and says so: a coin toss is not a measurement. Remade at every start."""
    started = time.perf_counter()
    sessions = {t: (ready or {}).get(t) or onnx_session(model, t) for t in candidates}
    default = max(candidates)
    name = sessions[default].get_inputs()[0].name
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    sample = {name: batch[: min(len(batch), 128)]}  # the cost per row, from one call on at most 128 rows
    for _ in range(2):
        sessions[default].run(None, sample)
    tick = time.perf_counter()
    sessions[default].run(None, sample)
    ms_per_row = max((time.perf_counter() - tick) * 1000 / len(sample[name]), 1e-6)
    block_ms = budget_ms / (len(candidates) * PROBE_CYCLES)
    rows = int(min(len(batch), max(1, block_ms / (PROBE_UNTIMED + 3) / ms_per_row)))
    feed = {name: batch[:rows]}
    timed_calls = max(3, int(block_ms / (rows * ms_per_row)) - PROBE_UNTIMED)
    blocks = {t: [] for t in candidates}
    for _ in range(PROBE_CYCLES):
        for t, session in sessions.items():
            for _ in range(PROBE_UNTIMED):
                session.run(None, feed)
            tick = time.perf_counter()
            for _ in range(timed_calls):
                session.run(None, feed)
            blocks[t].append((time.perf_counter() - tick) * 1000 / timed_calls)
    best = {t: min(b) for t, b in blocks.items()}
    spread = {t: float(np.median(b)) / best[t] - 1 for t, b in blocks.items()}
    ranked = sorted(candidates, key=lambda t: (best[t], t))
    winner, separated = ranked[0], True
    if len(ranked) > 1:
        runner_up = ranked[1]
        separated = best[runner_up] / best[winner] - 1 > max(spread[winner], spread[runner_up])
    threads = winner if separated else default
    rows_run = 3 * len(sample[name]) + PROBE_CYCLES * len(candidates) * (PROBE_UNTIMED + timed_calls) * rows
    return sessions[threads], ThreadChoice(threads, best, spread, rows, len(batch), time.perf_counter() - started, separated, rows_run)


def write_output(path, output, outfmt):
    if outfmt == "TXT":
        write_bytes_atomic(path, format_msame_txt(output).encode())
    else:
        write_bytes_atomic(path, np.ascontiguousarray(output, dtype=np.float32).tobytes())


def output_names(stem, count, outfmt):
    suffix = ".txt" if outfmt == "TXT" else ".bin"
    return [f"{stem}_output_{k}{suffix}" for k in range(count)]


def input_stem(path):
    """msame cuts the input name at its last '.'."""
    return path.name.rsplit(".", 1)[0] if "." in path.name else path.name


class Runner:
    """One ONNX Runtime session that runs input files and times only the model execution.

    It opens with `threads` intra-op threads; measure_threads() then times every candidate count on a batch
    and keeps the fastest (how, in self.choice, for the log)."""

    def __init__(self, model_path, threads=1):
        self.model_path = model_path
        self.model = read_model(model_path)  # read once, with its folder; every session comes from these bytes
        self.threads, self.choice = threads, None
        self._use(onnx_session(self.model, threads))

    def _use(self, session):
        self.session = session
        self.signature = model_signature(session, self.model_path)
        self.input_name, self.features, self.fixed_batch = self.signature.input_name, self.signature.features, self.signature.fixed_batch
        self.output_names = self.signature.output_names
        self._output_dtypes, self._output_shapes = self.signature.output_dtypes, self.signature.output_shapes
        self._bindings = {}  # rows -> (io binding, output arrays): no allocation per call

    def measure_threads(self, batch, workers=1):
        """Choose the thread count by timing each candidate on (a slice of) `batch` (a file's values, shaped here to the
        model's rows); with one candidate (a worker per core) there is nothing to choose."""
        candidates = thread_candidates(workers)
        if len(candidates) > 1:
            batch = np.asarray(batch, np.float32).reshape(-1, self.features)
            session, self.choice = choose_threads(self.model, batch, candidates, ready={self.threads: self.session})
            self.threads = self.choice.threads
            self._use(session)
        return self

    def describe_threads(self):
        return self.choice.describe() if self.choice else f"{self.threads} (fixed)"

    def _binding(self, rows):
        if rows not in self._bindings:
            binding = self.session.io_binding()
            arrays = []
            for name, dtype, shape in zip(self.output_names, self._output_dtypes, self._output_shapes):
                array = np.empty([rows if not isinstance(d, int) or k == 0 else d for k, d in enumerate(shape)], dtype)
                binding.bind_output(name, "cpu", 0, dtype, array.shape, array.ctypes.data)
                arrays.append(array)
            self._bindings[rows] = binding, arrays
        return self._bindings[rows]

    def execute(self, batch):
        """Outputs (valid until the next call with as many rows) and the execution time in ms."""
        binding, arrays = self._binding(len(batch))
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        binding.bind_cpu_input(self.input_name, batch)
        start = time.perf_counter()
        try:
            self.session.run_with_iobinding(binding)
        except Exception as err:  # onnxruntime raises its own types; an allocation failure is the user's to fix, the rest re-raised
            if "alloc" not in str(err).lower():
                raise
            raise MemoryError(f"ONNX Runtime could not allocate memory for it ({one_line_reason(err)})") from None
        return arrays, (time.perf_counter() - start) * 1000.0

    def cold_start(self, batch, session_ms):
        """{session_ms, first_inference_ms, first_inference_rows}: what onnxruntime_perf_test and trtexec report beside
        the steady state. The first inference of the fresh session, on the batch's first rows (at most 1,024, or the
        model's fixed batch)."""
        rows = self.fixed_batch or min(len(batch), 1024)
        _, first_ms = self.execute(batch[:rows])
        return {
            "session_ms": round(session_ms, 3),
            "first_inference_ms": round(first_ms, 4),
            "first_inference_rows": int(rows),
            "threads": self.threads,
        }

    def read_batch(self, path):
        return np.frombuffer(read_bytes(path, "input file"), dtype=np.float32).reshape(-1, self.features)

    def warm_up(self, batch, count):
        for _ in range(count):
            self.execute(batch)

    def run_files(self, files, run_dir, outfmt, loop=1, warmup=0, stem=None, parent_pid=None):
        """Run each file `loop` times after `warmup` untimed executions, write <stem>_output_<k> once per file,
        print msame's per-call line. Returns (times in ms, names of the outputs that hold NaN or Inf).

        A worker (parent_pid given) stops before its next file if its parent is gone, where the parent-death
        signal is not available."""
        times, nonfinite = [], []
        shown = files if parent_pid is not None else progress(files, desc="offline", unit="file", leave=False)  # a terminal only
        for n, path in enumerate(shown):
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(1)
            batch = self.read_batch(path)
            if n == 0:
                self.warm_up(batch, warmup)
            for _ in range(loop):
                try:
                    outputs, ms = self.execute(batch)
                except MemoryError as err:  # the memory check passed, yet the library ran out (a limit it could not see)
                    raise InputError(
                        f"{path}: a batch of {len(batch):,} rows: {err or 'out of memory'}; split it into smaller batches"
                    ) from None
                times.append(ms)
                print(f"Inference time: {ms:g}ms", flush=False)
            for name, output in zip(output_names(stem or input_stem(path), len(outputs), outfmt), outputs):
                if not np.isfinite(output).all():
                    nonfinite.append(name)
                write_output(run_dir / name, output, outfmt)
        sys.stdout.flush()
        return times, nonfinite


def _worker(sender, model_path, threads, files, run_dir, outfmt, loop, warmup, workers, parent_pid):
    """One device's share of a multi-device run, in its own process; it dies with the runner."""
    die_with_parent(parent_pid)
    install_signal_handlers()  # SIGTERM from the runner: unwind, removing any temporary file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the whole process group; the runner handles it
    try:
        files = [Path(f) for f in files]
        runner = Runner(Path(model_path), threads or 1)
        if not threads:
            runner.measure_threads(runner.read_batch(files[0]), workers)
        times, nonfinite = runner.run_files(files, Path(run_dir), outfmt, loop, warmup, parent_pid=parent_pid)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # every output is written: nothing left to clean up
        sender.send(("ok", (times, nonfinite, runner.describe_threads())))
    except InputError as err:
        sender.send(("error", str(err)))
    except OSError as err:
        sender.send(("error", describe_os_error(err)))
    except Interrupted as err:
        sys.exit(128 + err.signum)  # temporary files are gone; the runner reports the interruption


def run_workers(model_path, threads, shares, run_dir, outfmt, loop, warmup):
    """[(times, nonfinite, threads description)] of one worker process per share; the first failure stops every worker."""
    context = multiprocessing.get_context("spawn")  # not fork: the runner already holds ONNX Runtime's thread pools
    workers = []
    try:
        for share in shares:
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker,
                daemon=True,
                args=(
                    sender,
                    str(model_path),
                    threads,
                    [str(f) for f in share],
                    str(run_dir),
                    outfmt,
                    loop,
                    warmup,
                    len(shares),
                    os.getpid(),
                ),
            )
            process.start()
            sender.close()
            workers.append((process, receiver))
        results = {}
        while len(results) < len(workers):
            for receiver in wait([r for p, r in workers if r not in results]):
                k = next(k for k, (p, r) in enumerate(workers) if r is receiver)
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    workers[k][0].join()
                    raise InputError(f"{run_dir}: worker {k} died (exit {workers[k][0].exitcode}) before it finished its share") from None
                if kind == "error":
                    raise InputError(payload)
                results[receiver] = payload
        for process, _ in workers:  # each has sent its result and is exiting
            process.join(10)
        return [results[r] for _, r in workers]
    finally:
        for process, _ in workers:
            if process.is_alive():
                process.terminate()
        for process, _ in workers:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()


def print_averages(times, folder_mode, prefix=""):
    """msame's average lines, with 6 decimals (msame's folder mode rounds to 0.01 ms, too coarse for this model). A
    device of a card run (prefix given) says the same in other words: msame's line is printed once per log, the
    card's, so that upstream's `grep "Inference average time : "` finds one figure."""
    if prefix:
        print(f"{prefix}mean time per batch: {np.mean(times):.6f} ms")
        return
    print(f"Inference average time{' :' if folder_mode else ':'} {np.mean(times):.6f} ms")
    if len(times) > 1:
        print(f"Inference average time without first time: {np.mean(times[1:]):.6f} ms")


def main(args):
    model_path, input_path = Path(args.model), Path(args.input)
    if not model_path.is_file():
        raise InputError(f"{model_path}: no such model file")
    if input_path.is_dir():
        file_mode = False
    elif input_path.is_file():
        file_mode = True
    else:
        raise InputError(f"{input_path}: no such input file or folder")
    if file_mode and not 1 <= args.loop <= 100:
        raise InputError(f"--loop {args.loop}: expected 1..100 in file mode (msame's range)")
    if file_mode and len(args.device) > 1:
        raise InputError(
            f"{input_path}: file mode runs one file on one device; pass an input folder to use --device {','.join(map(str, args.device))}"
        )
    refuse_overlap([("--model", model_path), ("--input", input_path)], [("--output", args.output)])
    files = [input_path] if file_mode else list_inputs(input_path)
    stems = {}
    for path in files:
        other = stems.setdefault(input_stem(path), path)
        if other is not path:
            raise InputError(f"{path}: gives the same output name as {other.name} ({input_stem(path)}_output_0): rename one")
    devices = args.device if file_mode else active_devices(args.device, len(files))
    started = time.perf_counter()
    runner = Runner(model_path, args.threads or 1)  # the model and its signature, checked before anything is written
    session_ms = (time.perf_counter() - started) * 1000
    if args.dymBatch is not None and runner.fixed_batch not in (None, args.dymBatch):
        raise InputError(f"--dymBatch {args.dymBatch}: {model_path.name} takes batches of exactly {runner.fixed_batch}")
    rows = [check_input(p, runner.features, runner.fixed_batch or args.dymBatch) for p in files]
    largest = max(range(len(files)), key=lambda k: rows[k])
    need = rows[largest] * bytes_per_row(runner.features, output_values_per_row(runner.signature), args.outfmt)
    check_memory(need, f"{files[largest]}: a batch of {rows[largest]:,} rows", "split it into smaller batches")
    first_batch = runner.read_batch(files[0])
    cold_start = runner.cold_start(first_batch, session_ms)
    if len(devices) == 1 and not args.threads:  # the workers of a card run measure for themselves
        runner.measure_threads(first_batch)
    batch_sizes = sorted(set(rows))
    stem = model_path.stem if file_mode else None
    expected = [n for p in files for n in output_names(stem or input_stem(p), len(runner.output_names), args.outfmt)]

    with Run(
        args.output,
        tool="onnxruntime",
        model=str(model_path.resolve()),
        input=str(input_path.resolve()),
        inputs=len(files),
        outfmt=args.outfmt,
        devices=devices,
        warmup=args.warmup,
        loop=args.loop,
    ) as run:
        print(RUNNER_MARKER)
        print(
            f"[INFO] model {model_path.name}, batch size {batch_sizes[0] if len(batch_sizes) == 1 else batch_sizes}, "
            f"{len(files)} input file(s), {len(devices)} worker(s)"
        )
        print(f"[INFO] cpu: {describe_cpu()}")
        if ignored_flags(args):
            print(f"[INFO] ignored on ONNX Runtime (msame's and ais_bench's flags with no meaning here): {ignored_flags(args)}")
        print(
            f"[INFO] warm-up: {args.warmup} execution(s) per worker before timing, excluded from every figure; "
            f"loop: each batch executed {args.loop} time(s), its output written once"
        )
        print(
            f"[INFO] cold start: session made in {cold_start['session_ms']:.1f} ms (the model read included), first inference "
            f"{cold_start['first_inference_ms']:.3f} ms on {cold_start['first_inference_rows']:,} row(s), {cold_start['threads']} thread(s); "
            f"excluded from every figure"
        )
        if len(devices) == 1:
            print(f"[INFO] threads per worker: {runner.describe_threads()}")
            with MachineLoad() as load:
                times, nonfinite = runner.run_files(files, run.dir, args.outfmt, args.loop, args.warmup, stem=stem)
            per_worker = {devices[0]: times}
            print_averages(times, folder_mode=not file_mode)
        else:
            shares = [files[d :: len(devices)] for d in range(len(devices))]
            with MachineLoad() as load:
                results = run_workers(model_path, args.threads, shares, run.dir, args.outfmt, args.loop, args.warmup)
            per_worker = {device: result[0] for device, result in zip(devices, results)}
            for device, share, (device_times, _, threads) in zip(devices, shares, results):
                print(f"[INFO] device {device}: {len(share)} file(s), threads {threads}")
                print_averages(device_times, folder_mode=True, prefix=f"[INFO] device {device}: ")
                print("\n".join(stats_lines(latency_stats(device_times), np.mean(rows), prefix=f"[INFO] device {device}: ")))
            times = [t for device_times, _, _ in results for t in device_times]
            nonfinite = sorted(n for _, names, _ in results for n in names)
            print(f"[INFO] card summary: {len(devices)} devices, {len(files)} file(s)")
            print_averages(times, folder_mode=True)
        card = latency_stats(times)
        batch = float(np.mean(rows))
        print("\n".join(stats_lines(card, batch)))
        throughputs = {d: 1000 * batch / latency_stats(t)["mean"] for d, t in per_worker.items()}
        if len(devices) > 1:
            print(f"[INFO] summary throughput: {sum(throughputs.values()):.3f} (sum over {len(devices)} workers)")
        if nonfinite:
            print(
                f"[WARN] outputs holding non-finite values (NaN or Inf): {len(nonfinite)} of {len(expected)} "
                f"({', '.join(nonfinite[:5])}{' ...' if len(nonfinite) > 5 else ''})"
            )
        else:
            print(f"[INFO] outputs holding non-finite values (NaN or Inf): 0 of {len(expected)}")
        spreads = [block_spread(t) for t in per_worker.values()]
        spread = max((x for x in spreads if x), key=lambda x: x["cv"], default=None)  # a card's: its least steady worker
        print(f"[INFO] spread: {describe_spread(spread)}{'' if len(per_worker) == 1 else ', the least steady worker'}")
        print(f"[INFO] machine load while timed: {describe_load(load.figures)}")
        unstable = unstable_reasons(spread, load.figures)
        if unstable:
            print(f"[WARN] unstable: {'; '.join(unstable)}: compare these figures with care, or run again on a quiet machine")
        extra = {"spread": spread, "unstable": unstable, "cold_start": cold_start}
        summary = write_summary(run, args, files, expected, card, times, batch, per_worker, throughputs, runner, load.figures, extra)
        run.complete(expected, beside=[summary], nonfinite_outputs=nonfinite)
    print(run.dir)
    print(f"[INFO] pid: {os.getpid()} Execute sample success")


def output_values_per_row(signature):
    """Output values per input row (the batch axis excluded), for the memory a batch needs."""
    return sum(int(np.prod([d if isinstance(d, int) else 1 for d in shape[1:]])) for shape in signature.output_shapes)


def bytes_per_row(features, output_values, outfmt):
    """Memory one input row costs the runner at its peak: the input, and per output value its buffer, ONNX Runtime's
    intermediate tensors and the written copy (BIN), or Python's formatting of every value (TXT). Measured on the
    generator (784 outputs): 200,000 rows peaked at 3.99 GB in BIN and 11.2 GB in TXT (Intel Xeon, 2 cores)."""
    return 4 * features + output_values * (72 if outfmt == "TXT" else 26)


def write_summary(run, args, files, expected, card, times, batch, per_worker, throughputs, runner, load, extra):
    """<output>/.<run>_summary.json in ais_bench's summary layout (NPU_compute_time, throughput, the per-call list),
    so tools that read ais_bench's summaries read this one; "tool" says what really ran, "cpu" on what. Its path."""
    per_file = len(expected) // len(files)
    summary = {
        "filesinfo": {
            i: {"infiles": [str(f)], "outfiles": [str(run.dir / n) for n in expected[i * per_file : (i + 1) * per_file]]}
            for i, f in enumerate(files)
        },
        "args": sys.argv,
        "tool": "onnxruntime (CPU): compute_time stored under ais_bench's NPU_compute_time",
        "NPU_compute_time": card,
        "throughput": 1000 * batch / card["mean"],
        "npu_compute_time_list": times,
        "batchsize": batch,
        "warmup": args.warmup,
        "loop": args.loop,
        "workers": len(per_worker),
        "per_worker": {str(d): dict(latency_stats(t), throughput=throughputs[d]) for d, t in per_worker.items()},
        "pid": os.getpid(),
        "cpu": cpu_features(),
        "threads": runner.describe_threads() if len(per_worker) == 1 else "per worker, in the log",
        "versions": versions("onnxruntime", "numpy"),
        "load": load,
        **extra,
    }
    path = beside_run(run.dir, "_summary.json")
    write_json(path, summary, SUMMARY)
    return path


if __name__ == "__main__":
    run_main(main, get_args_parser())
