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
the run contract (gan_runs.py): complete only once every output is written and counted. Needs numpy and
onnxruntime only.
"""
import argparse
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from gan_cli import (InputError, Interrupted, die_with_parent, describe_os_error, install_signal_handlers, non_negative_int,
                     refuse_overlap, run_main)
from gan_io import format_msame_txt, onnx_session, read_bytes, write_bytes_atomic
from gan_runs import Run, active_devices, check_input, list_inputs, parse_devices

RUNNER_MARKER = "[INFO] ONNX Runtime runner with msame's interface"


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="ONNX model (GAN.onnx)")
    parser.add_argument("--input", required=True, help="folder of input .bin files (folder mode) or one .bin file (file mode)")
    parser.add_argument("--output", required=True, help="output root; each run writes into a new run folder under it")
    parser.add_argument("--outfmt", type=str.upper, choices=["TXT", "BIN"], default="BIN", help="output file format")
    parser.add_argument("--loop", type=int, default=1, help="executions in file mode, 1..100 (ignored in folder mode, as in msame)")
    parser.add_argument("--device", type=parse_devices, default=[0],
                        help="device id, or a comma-separated list: one worker process per device, files split between them")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="ONNX Runtime intra-op threads per worker (0: cores / workers for fp32, 1 for an int8 model)")
    return parser


def default_threads(model_path, workers=1):
    """Intra-op threads per worker: every core for an fp32 model; one for a dynamically quantized (int8) model,
    whose per-layer activation quantization gains little from a second core (measured here at batch 64:
    0.229 vs 0.254 ms in one run, equal in another), leaving it to a second worker. --threads overrides."""
    cores = max(1, (os.cpu_count() or 1) // workers)
    content = read_bytes(model_path, "ONNX model")
    quantized = b"DynamicQuantizeLinear" in content or b"MatMulInteger" in content
    return 1 if quantized else cores


def model_signature(session, model_path):
    """(input name, features per row, fixed batch or None) of a single-input model."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 2 or not isinstance(inputs[0].shape[1], int):
        raise InputError(f"{model_path}: expected one input of shape (batch, features), found "
                         f"{[(i.name, i.shape) for i in inputs]}")
    batch = inputs[0].shape[0]
    return inputs[0].name, inputs[0].shape[1], batch if isinstance(batch, int) else None


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
    """One ONNX Runtime session that runs input files and times only the model execution."""

    def __init__(self, model_path, threads=0):
        self.model_path = model_path
        self.threads = threads or default_threads(model_path)
        self.session = onnx_session(model_path, self.threads)
        self.input_name, self.features, self.fixed_batch = model_signature(self.session, model_path)
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self._output_dtypes = [np.float16 if "float16" in o.type else np.float32 for o in outputs]
        self._output_shapes = [o.shape for o in outputs]
        self._bindings = {}  # rows -> (io binding, output arrays): no allocation per call

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
        self.session.run_with_iobinding(binding)
        return arrays, (time.perf_counter() - start) * 1000.0

    def read_batch(self, path):
        return np.frombuffer(read_bytes(path, "input file"), dtype=np.float32).reshape(-1, self.features)

    def run_files(self, files, run_dir, outfmt, parent_pid=None):
        """Run each file once, write <stem>_output_<k>, print msame's per-file line.

        Returns (times in ms, names of the outputs that hold NaN or Inf). A worker (parent_pid given) stops
        before its next file if its parent is gone, where the parent-death signal is not available.
        """
        times, nonfinite = [], []
        for path in files:
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(1)
            outputs, ms = self.execute(self.read_batch(path))
            times.append(ms)
            print(f"Inference time: {ms:g}ms", flush=False)
            for name, output in zip(output_names(input_stem(path), len(outputs), outfmt), outputs):
                if not np.isfinite(output).all():
                    nonfinite.append(name)
                write_output(run_dir / name, output, outfmt)
        sys.stdout.flush()
        return times, nonfinite


def _worker(sender, model_path, threads, files, run_dir, outfmt, parent_pid):
    """One device's share of a multi-device run, in its own process; it dies with the runner."""
    die_with_parent(parent_pid)
    install_signal_handlers()  # SIGTERM from the runner: unwind, removing any temporary file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the whole process group; the runner handles it
    try:
        result = Runner(Path(model_path), threads).run_files([Path(f) for f in files], Path(run_dir), outfmt, parent_pid)
        sender.send(("ok", result))
    except InputError as err:
        sender.send(("error", str(err)))
    except OSError as err:
        sender.send(("error", describe_os_error(err)))
    except Interrupted as err:
        sys.exit(128 + err.signum)  # temporary files are gone; the runner reports the interruption


def run_workers(model_path, threads, shares, run_dir, outfmt):
    """[(times, nonfinite)] of one worker process per share; the first failure stops every worker."""
    context = multiprocessing.get_context("spawn")  # not fork: the runner already holds ONNX Runtime's thread pools
    workers = []
    try:
        for share in shares:
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_worker, daemon=True, args=(sender, str(model_path), threads, [str(f) for f in share],
                                                                         str(run_dir), outfmt, os.getpid()))
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
    """msame's average lines, with 6 decimals (msame's folder mode rounds to 0.01 ms, too coarse for this model)."""
    print(f"{prefix}Inference average time{' :' if folder_mode else ':'} {np.mean(times):.6f} ms")
    if len(times) > 1:
        print(f"{prefix}Inference average time without first time: {np.mean(times[1:]):.6f} ms")


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
        raise InputError(f"--loop {args.loop}: expected 1..100 (msame's range)")
    if file_mode and len(args.device) > 1:
        raise InputError(f"{input_path}: file mode runs one file on one device; pass an input folder to use --device "
                         f"{','.join(map(str, args.device))}")
    refuse_overlap([("--model", model_path), ("--input", input_path)], [("--output", args.output)])
    files = [input_path] if file_mode else list_inputs(input_path)
    stems = {}
    for path in files:
        other = stems.setdefault(input_stem(path), path)
        if other is not path:
            raise InputError(f"{path}: gives the same output name as {other.name} ({input_stem(path)}_output_0): rename one")
    devices = args.device if file_mode else active_devices(args.device, len(files))
    threads = args.threads or default_threads(model_path, len(devices))
    runner = Runner(model_path, threads)
    rows = [check_input(p, runner.features, runner.fixed_batch) for p in files]
    batch_sizes = sorted(set(rows))
    stem_of_output = model_path.stem if file_mode else None
    expected = [n for p in files for n in output_names(stem_of_output or input_stem(p), len(runner.output_names), args.outfmt)]

    with Run(args.output, tool="onnxruntime", model=str(model_path.resolve()), input=str(input_path.resolve()),
             inputs=len(files), outfmt=args.outfmt, devices=devices) as run:
        print(RUNNER_MARKER)
        print(f"[INFO] model {model_path.name}, batch size {batch_sizes[0] if len(batch_sizes) == 1 else batch_sizes}, "
              f"{len(files)} input file(s), {len(devices)} worker(s) x {threads} thread(s)")
        if file_mode:
            batch = runner.read_batch(files[0])
            times = []
            for _ in range(args.loop):
                outputs, ms = runner.execute(batch)
                times.append(ms)
                print(f"Inference time: {ms:g}ms")
            nonfinite = [n for n, o in zip(expected, outputs) if not np.isfinite(o).all()]
            for name, output in zip(expected, outputs):
                write_output(run.dir / name, output, args.outfmt)
            print_averages(times, folder_mode=False)
        elif len(devices) == 1:
            times, nonfinite = runner.run_files(files, run.dir, args.outfmt)
            print_averages(times, folder_mode=True)
        else:
            shares = [files[d::len(devices)] for d in range(len(devices))]
            results = run_workers(model_path, threads, shares, run.dir, args.outfmt)
            for device, share, (device_times, _) in zip(devices, shares, results):
                print(f"[INFO] device {device}: {len(share)} file(s)")
                print_averages(device_times, folder_mode=True, prefix=f"[INFO] device {device}: ")
            times = [t for device_times, _ in results for t in device_times]
            nonfinite = sorted(n for _, names in results for n in names)
            print(f"[INFO] card summary: {len(devices)} devices, {len(times)} file(s)")
            print_averages(times, folder_mode=True)
        if nonfinite:
            print(f"[WARN] outputs holding non-finite values (NaN or Inf): {len(nonfinite)} of {len(expected)} "
                  f"({', '.join(nonfinite[:5])}{' ...' if len(nonfinite) > 5 else ''})")
        else:
            print(f"[INFO] outputs holding non-finite values (NaN or Inf): 0 of {len(expected)}")
        run.complete(expected, nonfinite_outputs=nonfinite)
    print(run.dir)
    print(f"[INFO] pid: {os.getpid()} Execute sample success")


if __name__ == "__main__":
    run_main(main, get_args_parser())
