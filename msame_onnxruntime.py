"""msame's interface, output layout and log lines, on ONNX Runtime: the offline step on a host with no Ascend NPU.

    python msame_onnxruntime.py --model GAN.onnx --input vectors --output out --outfmt TXT

Folder mode (--input is a folder): every non-hidden file of the folder, in sorted name order, is one batch;
its output goes to <output>/<run folder>/<name without extension>_output_0.txt|.bin. File mode (--input
names a .bin file): that file is run --loop times and its output written once, named after the model, as
msame does. The TXT format is msame's (6 significant digits, a space after every value, a newline after
every row of 28 values); BIN is raw float32. Only the model execution is timed, as msame times
aclmdlExecute. --device 0,1,... runs one worker process per listed device over its share of the files and
gathers every output into one run folder. Needs numpy and onnxruntime only.
"""
import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from gan_io import (InputError, check_input, format_msame_txt, list_inputs, new_run_folder, parse_devices, run_main,
                    write_bytes_atomic)

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
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads per worker (0: cores / workers for fp32, 1 for an int8 model)")
    return parser


def open_session(model_path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise InputError(f"{model_path}: not a loadable ONNX model ({str(err).splitlines()[0][:160]})") from None


def default_threads(model_path, workers=1):
    """Intra-op threads per worker: every core for an fp32 model; one for a dynamically quantized (int8) model,
    whose per-layer activation quantization gains little from a second core (measured here at batch 64:
    0.229 vs 0.254 ms in one run, equal in another), leaving it to a second worker. --threads overrides."""
    cores = max(1, (os.cpu_count() or 1) // workers)
    try:
        content = Path(model_path).read_bytes()
    except OSError:
        return cores
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


class Runner:
    """One ONNX Runtime session that runs input files and times only the model execution."""

    def __init__(self, model_path, threads=0):
        self.model_path = model_path
        self.threads = threads or default_threads(model_path)
        self.session = open_session(model_path, self.threads)
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

    def run_files(self, files, run_dir, outfmt):
        """Run each file once, write <stem>_output_<k>, print msame's per-file line; return the times in ms."""
        times = []
        suffix = ".txt" if outfmt == "TXT" else ".bin"
        for path in files:
            batch = np.fromfile(path, dtype=np.float32).reshape(-1, self.features)
            outputs, ms = self.execute(batch)
            times.append(ms)
            print(f"Inference time: {ms:g}ms", flush=False)
            stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
            for k, output in enumerate(outputs):
                write_output(run_dir / f"{stem}_output_{k}{suffix}", output, outfmt)
        sys.stdout.flush()
        return times


def _worker(model_path, threads, files, run_dir, outfmt):
    """One device's share of a multi-device run, in its own process."""
    return Runner(model_path, threads).run_files([Path(f) for f in files], Path(run_dir), outfmt)


def print_averages(times, folder_mode, prefix=""):
    """msame's average lines, with 6 decimals (msame's folder mode rounds to 0.01 ms, too coarse for this model)."""
    print(f"{prefix}Inference average time{' :' if folder_mode else ':'} {np.mean(times):.6f} ms")
    if len(times) > 1:
        print(f"{prefix}Inference average time without first time: {np.mean(times[1:]):.6f} ms")


def main(args):
    model_path = Path(args.model)
    if not model_path.is_file():
        raise InputError(f"{model_path}: no such model file")
    workers = len(args.device)
    threads = args.threads or default_threads(model_path, workers)
    file_mode = ".bin" in args.input.split(",")[0]
    runner = Runner(model_path, threads)
    if file_mode:
        files = [Path(args.input)]
        if not files[0].is_file():
            raise InputError(f"{files[0]}: no such input file")
        if not 1 <= args.loop <= 100:
            raise InputError(f"--loop {args.loop}: expected 1..100 (msame's range)")
    else:
        files = list_inputs(args.input)
    rows = [check_input(p, runner.features, runner.fixed_batch) for p in files]
    batch_sizes = sorted(set(rows))
    run_dir = new_run_folder(args.output)

    print(RUNNER_MARKER)
    print(f"[INFO] model {model_path.name}, batch size {batch_sizes[0] if len(batch_sizes) == 1 else batch_sizes}, "
          f"{len(files)} input file(s), {workers} worker(s) x {threads} thread(s)")
    if file_mode:
        batch = np.fromfile(files[0], dtype=np.float32).reshape(-1, runner.features)
        times = []
        for _ in range(args.loop):
            outputs, ms = runner.execute(batch)
            times.append(ms)
            print(f"Inference time: {ms:g}ms")
        suffix = ".txt" if args.outfmt == "TXT" else ".bin"
        for k, output in enumerate(outputs):
            write_output(run_dir / f"{model_path.stem}_output_{k}{suffix}", output, args.outfmt)
        print_averages(times, folder_mode=False)
    elif workers == 1:
        times = runner.run_files(files, run_dir, args.outfmt)
        print_averages(times, folder_mode=True)
    else:
        shares = [files[d::workers] for d in range(workers)]
        # spawn, not fork: the parent already holds ONNX Runtime's thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_worker, str(model_path), threads, [str(f) for f in share], str(run_dir), args.outfmt)
                       for share in shares]
            results = [f.result() for f in futures]
        for device, share, times in zip(args.device, shares, results):
            print(f"[INFO] device {device}: {len(share)} file(s)")
            print_averages(times, folder_mode=True, prefix=f"[INFO] device {device}: ")
        times = [t for r in results for t in r]
        print(f"[INFO] card summary: {workers} devices, {len(times)} file(s)")
        print_averages(times, folder_mode=True)
    written = sum(1 for p in run_dir.iterdir() if not p.name.startswith("."))
    expected = len(runner.output_names) * (1 if file_mode else len(files))
    if written != expected:
        raise InputError(f"{run_dir}: {written} output files for {expected} expected")
    print(run_dir)
    print(f"[INFO] pid: {os.getpid()} Execute sample success")


if __name__ == "__main__":
    run_main(main, get_args_parser())
