"""Run atc once per batch size and judge each conversion by its log and by the .om file on disk.

    bash atc_convert.sh --onnx GAN.onnx                 # GAN_bs1.om, GAN_bs16.om, GAN_bs64.om
    bash atc_convert.sh --onnx GAN.onnx --dry_run       # print the commands only (no CANN needed)

The input name and feature size are read from the ONNX file. A conversion counts as done only when atc
printed "ATC run success" AND a new <prefix><N>*.om exists (atc may add a suffix such as _linux_x86_64);
atc's output is kept in <prefix><N>.atc.log. Exits 1 if any conversion failed.
"""
import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

from gan_cli import InputError, refuse_overlap, run_main
from gan_io import ensure_dir, read_bytes, write_bytes_atomic

PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision", "force_fp32")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--onnx", required=True, help="ONNX model from GAN_pth2onnx.py")
    parser.add_argument("--batch_sizes", default="1 16 64", help="batch sizes, space or comma separated")
    parser.add_argument("--soc_version", default="Ascend310", help="chip, e.g. Ascend310 or Ascend310P3 (npu-smi info)")
    parser.add_argument("--precision_mode", choices=PRECISION_MODES, default=None,
                        help="atc precision (atc's default for inference: force_fp16)")
    parser.add_argument("--output_prefix", default="GAN_bs", help="output name before the batch size")
    parser.add_argument("--dry_run", action="store_true", help="print the atc commands, run nothing")
    return parser


def onnx_input(path):
    """(name, features) of the model's single (batch, features) input."""
    import onnx

    content = read_bytes(path, "ONNX model")
    try:
        model = onnx.load_from_string(content)
    except Exception as err:  # noqa: BLE001 - protobuf raises various errors on a non-ONNX file
        raise InputError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim] if inputs else []
    if len(inputs) != 1 or len(dims) != 2 or not dims[1]:
        raise InputError(f"{path}: expected one input of shape (batch, features), found {[i.name for i in inputs]} {dims}")
    return inputs[0].name, dims[1]


def parse_batch_sizes(text):
    try:
        sizes = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"--batch_sizes {text!r}: expected whole numbers such as \"1 16 64\"") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise InputError(f"--batch_sizes {text!r}: expected positive batch sizes")
    return sizes


def atc_command(args, name, features, batch):
    command = ["atc", f"--model={args.onnx}", "--framework=5", f"--output={args.output_prefix}{batch}", "--input_format=NCHW",
               f"--input_shape={name}:{batch},{features}", "--log=error", f"--soc_version={args.soc_version}"]
    if args.precision_mode:
        command.append(f"--precision_mode={args.precision_mode}")
    return command


def show(command):
    """The command as a person would paste it: every argument shell-quoted as a whole (an input name from the
    ONNX file may hold quotes or semicolons)."""
    return shlex.join(command)


def convert(command, prefix_batch):
    """Run one atc command; (verdict, .om path or None, log path)."""
    log = Path(f"{prefix_batch}.atc.log")
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    write_bytes_atomic(log, output.encode())
    sys.stdout.write(output)
    success_line = "ATC run success" in output
    directory = Path(prefix_batch).parent
    fresh = sorted(p for p in directory.glob(Path(prefix_batch).name + "*.om") if p.stat().st_mtime >= started - 1)
    om = fresh[0] if fresh else None
    if success_line and om:
        return "ok", om, log
    if not success_line:
        errors = [line for line in output.splitlines() if "failed" in line.lower() or line[:2] in ("E1", "EE", "E2")]
        return f"failed (exit {result.returncode}): {errors[-1] if errors else 'no ATC run success line'}", om, log
    return "failed: atc printed success but wrote no new .om", None, log


def main(args):
    if not Path(args.onnx).is_file():
        raise InputError(f"{args.onnx}: no such ONNX model (make it with GAN_pth2onnx.py)")
    name, features = onnx_input(args.onnx)
    batches = parse_batch_sizes(args.batch_sizes)
    commands = {b: atc_command(args, name, features, b) for b in batches}
    refuse_overlap([("--onnx", args.onnx)], [(f"the output of batch {b}", f"{args.output_prefix}{b}{suffix}")
                                             for b in batches for suffix in (".om", ".atc.log")])
    if args.dry_run:
        for command in commands.values():
            print(show(command))
        return 0
    ensure_dir(Path(args.output_prefix).parent, "output folder")
    results = {}
    for batch, command in commands.items():
        print(f"== batch {batch}: {show(command)}", flush=True)
        results[batch] = convert(command, f"{args.output_prefix}{batch}")
    print(f"\n{'batch':>5}  {'om file':<32} result")
    for batch, (verdict, om, log) in results.items():
        print(f"{batch:>5}  {str(om) if om else '-':<32} {verdict} (log: {log})")
    failed = [b for b, (verdict, _, _) in results.items() if verdict != "ok"]
    if failed:
        print(f"atc_convert.sh: {len(failed)} of {len(batches)} conversions failed (batch {', '.join(map(str, failed))})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
