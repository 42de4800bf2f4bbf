"""Run atc once per batch size (or once for a dynamic-batch model) and judge each conversion by its log and its .om.

    bash atc_convert.sh --onnx GAN.onnx                 # GAN_bs1.om, GAN_bs16.om, GAN_bs64.om
    bash atc_convert.sh --onnx GAN.onnx --dynamic_batch_size "1,4,8,16,32,64"   # GAN_dyn.om, one model, six gears
    bash atc_convert.sh --onnx GAN.onnx --dry_run       # print the commands only (no CANN needed)

The input name and feature size are read from the ONNX file. A conversion counts as done only when atc
printed "ATC run success" AND a new <output>*.om exists (atc may add a suffix such as _linux_x86_64);
atc's output is kept in <output>.atc.log, and <output>.atc.json records the command, the input, the
batch or the dynamic gears, the chip and the precision, which run_msame.sh reads to check --dymBatch.
A dynamic-batch model takes atc's rule: 2 to 100 gears, each 1..2048. Exits 1 if any conversion failed.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from gan_cli import InputError, batch_sizes, ensure_dir, refuse_overlap, run_main
from gan_io import read_bytes, write_bytes_atomic

PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision", "force_fp32")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--onnx", required=True, help="ONNX model from GAN_pth2onnx.py")
    parser.add_argument("--batch_sizes", type=batch_sizes, default="1 16 64", help="batch sizes, space or comma separated")
    parser.add_argument("--soc_version", default="Ascend310", help="chip, e.g. Ascend310 or Ascend310P3 (npu-smi info)")
    parser.add_argument(
        "--precision_mode", choices=PRECISION_MODES, default=None, help="atc precision (atc's default for inference: force_fp16)"
    )
    parser.add_argument("--output_prefix", default="GAN_bs", help="output name before the batch size")
    parser.add_argument(
        "--dynamic_batch_size",
        default=None,
        help='one dynamic-batch model with these gears instead, e.g. "1,4,8,16,32,64" (2..100 gears, each 1..2048)',
    )
    parser.add_argument("--dynamic_output", default="GAN_dyn", help="name of the dynamic-batch model (without .om)")
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


def parse_gears(text):
    """atc's --dynamic_batch_size rule: 2 to 100 distinct gears, each 1..2048."""
    try:
        gears = [int(g) for g in text.replace(" ", "").split(",") if g]
    except ValueError:
        raise InputError(f'--dynamic_batch_size {text!r}: expected comma-separated whole numbers such as "1,4,8,16,32,64"') from None
    if not 2 <= len(gears) <= 100 or any(not 1 <= g <= 2048 for g in gears) or len(set(gears)) != len(gears):
        raise InputError(f"--dynamic_batch_size {text!r}: atc takes 2 to 100 distinct gears, each 1..2048")
    return gears


def atc_command(args, name, features, batch=None, gears=None):
    """One atc command: a fixed batch, or a dynamic batch (-1 in the shape, the gears in --dynamic_batch_size)."""
    output = args.dynamic_output if gears else f"{args.output_prefix}{batch}"
    command = [
        "atc",
        f"--model={args.onnx}",
        "--framework=5",
        f"--output={output}",
        "--input_format=NCHW",
        f"--input_shape={name}:{-1 if gears else batch},{features}",
    ]
    if gears:
        command.append(f"--dynamic_batch_size={','.join(map(str, gears))}")
    command += ["--log=error", f"--soc_version={args.soc_version}"]
    if args.precision_mode:
        command.append(f"--precision_mode={args.precision_mode}")
    return output, command


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
    if args.dynamic_batch_size:
        gears = parse_gears(args.dynamic_batch_size)
        conversions = {
            f"dynamic {','.join(map(str, gears))}": (*atc_command(args, name, features, gears=gears), {"dynamic_batch_size": gears})
        }
    else:
        conversions = {str(b): (*atc_command(args, name, features, batch=b), {"batch": b}) for b in args.batch_sizes}
    refuse_overlap(
        [("--onnx", args.onnx)],
        [
            (f"the output of {label}", f"{output}{suffix}")
            for label, (output, _, _) in conversions.items()
            for suffix in (".om", ".atc.log", ".atc.json")
        ],
    )
    if args.dry_run:
        for _, command, _ in conversions.values():
            print(show(command))
        return 0
    results = {}
    for label, (output, command, shape) in conversions.items():
        ensure_dir(Path(output).parent, "output folder")
        print(f"== {label}: {show(command)}", flush=True)
        results[label] = convert(command, output)
        record = {
            "command": command,
            "input": name,
            "features": features,
            **shape,
            "soc_version": args.soc_version,
            "precision_mode": args.precision_mode or "force_fp16 (atc's default)",
            "result": results[label][0],
        }
        write_bytes_atomic(Path(f"{output}.atc.json"), (json.dumps(record, indent=1) + "\n").encode())
    print(f"\n{'model':>20}  {'om file':<32} result")
    for label, (verdict, om, log) in results.items():
        print(f"{label:>20}  {str(om) if om else '-':<32} {verdict} (log: {log})")
    failed = [label for label, (verdict, _, _) in results.items() if verdict != "ok"]
    if failed:
        print(f"atc_convert.sh: {len(failed)} of {len(results)} conversions failed ({', '.join(failed)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
