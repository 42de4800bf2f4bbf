"""Run atc once per batch size (or once for a dynamic-batch model) and judge each conversion by its log and its .om.

    bash atc_convert.sh --onnx GAN.onnx                 # GAN_bs1.om, GAN_bs16.om, GAN_bs64.om
    bash atc_convert.sh --onnx GAN.onnx --dynamic_batch_size "1,4,8,16,32,64"   # GAN_dyn.om, one model, six gears
    bash atc_convert.sh --onnx GAN.onnx --dry_run       # print the commands only (no CANN needed)

The model is checked first (one float32 input of shape (batch, features), its name and size read from the
file, on ONNX Runtime; --dry_run too). A conversion counts as done only when atc printed "ATC run
success" AND the .om of that exact name is new on disk (<output>.om, or <output>_linux_x86_64.om /
_linux_aarch64.om where atc adds the host's name; GAN_bs16.om is never taken for GAN_bs1's). atc's output is
kept in <output>.atc.log. Only after a conversion succeeded, <output>.atc.json records the command, the
input, the batch or the dynamic gears, the chip, the precision, and the .om's name, size and sha256:
run_msame.sh checks the record against the .om on disk before it trusts it (for --dymBatch and the chip),
so a failed conversion leaves the previous record, and a record of another .om is refused. A
dynamic-batch model takes atc's rule: 2 to 100 distinct gears, each 1..2048 (a bad list is refused like
any bad flag, exit 2). Exits 1 if any conversion failed.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from gan.atc_onnx import ATC_OPSETS, atc_problems, read_structure
from gan.cli import HelpFormatter, InputError, batch_sizes, ensure_dir, program_name, refuse_overlap, run_main
from gan.files import file_digest, read_text, write_bytes_atomic
from gan.onnx_models import model_signature, onnx_session, read_model
from gan.records import ATC_RECORD, ATC_RECORD_FORMAT, write_json

PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision", "force_fp32")


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--onnx", required=True, help="ONNX model from GAN_pth2onnx.py")
    parser.add_argument("--batch_sizes", type=batch_sizes, default="1 16 64", help="batch sizes, space or comma separated")
    parser.add_argument("--soc_version", default="Ascend310", help="chip, e.g. Ascend310 or Ascend310P3 (npu-smi info)")
    parser.add_argument(
        "--precision_mode", choices=PRECISION_MODES, default=None, help="atc precision (atc's default for inference: force_fp16)"
    )
    parser.add_argument("--output_prefix", default="GAN_bs", help="output name before the batch size")
    parser.add_argument(
        "--dynamic_batch_size",
        type=gears,
        default=None,
        help='one dynamic-batch model with these gears instead, e.g. "1,4,8,16,32,64" (2..100 gears, each 1..2048)',
    )
    parser.add_argument("--dynamic_output", default="GAN_dyn", help="name of the dynamic-batch model (without .om)")
    parser.add_argument("--dry_run", action="store_true", help="print the atc commands, run nothing")
    parser.add_argument(
        "--keep_dtype",
        default=None,
        help="atc's --keep_dtype file: operators kept at their original precision (GAN_layer_compare.py --advise writes it); "
        "adds --precision_mode force_fp16 when no mode is given (default: none)",
    )
    parser.add_argument(
        "--cann_version",
        choices=sorted(ATC_OPSETS),
        default="5.0.4",
        help="the CANN whose atc the model is checked for (default: 5.0.4, the guide's)",
    )
    parser.add_argument(
        "--ignore_check", action="store_true", help="convert even when the check finds what atc would refuse (printed as warnings)"
    )
    return parser


def onnx_input(path):
    """(name, features) of the model's single float32 (batch, features) input, checked as every consumer checks it."""
    signature = model_signature(onnx_session(path), path)
    return signature.input_name, signature.features


def gears(text):
    """argparse type for --dynamic_batch_size, atc's rule: 2 to 100 distinct gears, each 1..2048."""
    try:
        values = [int(g) for g in text.replace(" ", "").split(",") if g]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated whole numbers such as "1,4,8,16,32,64", got {text!r}') from None
    if not 2 <= len(values) <= 100 or any(not 1 <= g <= 2048 for g in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"atc takes 2 to 100 distinct gears, each 1..2048, got {text!r}")
    return values


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
    if args.keep_dtype:
        command.append(f"--keep_dtype={args.keep_dtype}")
    return output, command


def show(command):
    """The command as a person would paste it: every argument shell-quoted as a whole (an input name from the
    ONNX file may hold quotes or semicolons)."""
    return shlex.join(command)


def om_files(output):
    """{path: (inode, size, mtime)} of the .om files atc may write for `output`: exactly <output>.om, or with the
    host's name added (<output>_linux_x86_64.om); never another batch size's (GAN_bs16.om for GAN_bs1)."""
    output = Path(output)
    name = re.compile(re.escape(output.name) + r"(_linux_(x86_64|aarch64))?\.om")
    found = {}
    for entry in os.scandir(output.parent):
        if name.fullmatch(entry.name) and entry.is_file():
            info = entry.stat()
            found[Path(entry.path)] = (info.st_ino, info.st_size, info.st_mtime_ns)
    return found


def convert(command, output):
    """Run one atc command; (verdict, .om path or None, log path)."""
    log = Path(f"{output}.atc.log")
    before = om_files(output)
    result = subprocess.run(command, capture_output=True, text=True)
    text = result.stdout + result.stderr
    write_bytes_atomic(log, text.encode())
    sys.stdout.write(text)
    success_line = "ATC run success" in text
    fresh = sorted(p for p, state in om_files(output).items() if before.get(p) != state)
    om = fresh[0] if len(fresh) == 1 else None
    if success_line and om:
        return "ok", om, log
    if success_line and len(fresh) > 1:
        return f"failed: atc printed success and wrote {len(fresh)} new .om files ({', '.join(p.name for p in fresh)})", None, log
    if not success_line:
        errors = [line for line in text.splitlines() if "failed" in line.lower() or line[:2] in ("E1", "EE", "E2")]
        return f"failed (exit {result.returncode}): {errors[-1] if errors else 'no ATC run success line'}", om, log
    return f"failed: atc printed success but wrote no new {Path(output).name}.om", None, log


KEEP_DTYPE_NAME = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]+")  # atc's rule for the file's name


def read_keep_dtype(path, content, model_path):
    """The operator names of a --keep_dtype file, each a node of the model or OpType::<type>; one line if not."""
    if not KEEP_DTYPE_NAME.fullmatch(Path(path).name):
        raise InputError(f"{path}: atc takes a --keep_dtype file named with letters, digits, '_', '-', '.' and Chinese characters only")
    names = [line.strip() for line in read_text(path, "--keep_dtype file", max_bytes=1 << 20).splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: no operator name in the --keep_dtype file")
    nodes = {name for name, _, _ in read_structure(content)["nodes"]}
    for name in names:
        if not (name in nodes or re.fullmatch(r"OpType::[A-Za-z][A-Za-z0-9_]*", name)):
            raise InputError(f"{path}: {name[:80]!r} is neither an operator name of {model_path} nor OpType::<type>")
    return names


def comment(text):
    """`text` as one shell comment line: a control character (a newline in a node's name) cannot end it."""
    return "# " + re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029]", lambda m: ascii(m.group())[1:-1], text)


def check_for_atc(args, content):
    """Print what atc would refuse, as shell comments (a --dry_run's output stays a script to paste); stop unless
    --ignore_check. Returns the number of problems."""
    problems = atc_problems(content, args.cann_version, args.soc_version, args.batch_sizes, args.dynamic_batch_size)
    if not problems:
        print(
            comment(
                f"check: {args.onnx} passes what atc of CANN {args.cann_version} checks for {args.soc_version} (opset, operators, batch)"
            )
        )
        return 0
    for problem in problems:
        print(comment(f"{'warning (--ignore_check)' if args.ignore_check else 'atc would refuse'}: {args.onnx}: {problem}"))
    if not args.ignore_check:
        raise InputError(
            f"{args.onnx}: {len(problems)} problem(s) atc of CANN {args.cann_version} would refuse (listed above): nothing converted; "
            "--ignore_check converts anyway"
        )
    return len(problems)


def main(args):
    if not Path(args.onnx).is_file():
        raise InputError(f"{args.onnx}: no such ONNX model (make it with GAN_pth2onnx.py)")
    if args.keep_dtype and args.precision_mode == "must_keep_origin_dtype":
        print(
            f"{program_name()}: error: --keep_dtype has no effect with --precision_mode must_keep_origin_dtype (see --help)",
            file=sys.stderr,
        )
        return 2
    content = read_model(args.onnx).content
    check_for_atc(args, content)  # first: what atc would refuse is said in atc's terms, before ONNX Runtime reads it
    name, features = onnx_input(args.onnx)
    kept = read_keep_dtype(args.keep_dtype, content, args.onnx) if args.keep_dtype else None
    if kept and not args.precision_mode:
        args.precision_mode = "force_fp16"  # atc applies --keep_dtype together with a precision mode
    if args.dynamic_batch_size:
        conversions = {
            f"dynamic {','.join(map(str, args.dynamic_batch_size))}": (
                *atc_command(args, name, features, gears=args.dynamic_batch_size),
                {"dynamic_batch_size": args.dynamic_batch_size},
            )
        }
    else:
        conversions = {f"batch {b}": (*atc_command(args, name, features, batch=b), {"batch": b}) for b in args.batch_sizes}
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
        results[label] = verdict, om, _ = convert(command, output)
        if verdict != "ok":
            continue  # the record of an earlier, good conversion stays as it was, and still matches its .om
        size, sha256 = file_digest(om, ".om model")
        record = {
            "format": ATC_RECORD_FORMAT,
            "command": command,
            "input": name,
            "features": features,
            **shape,
            "soc_version": args.soc_version,
            "precision_mode": args.precision_mode or "force_fp16 (atc's default)",
            "om": {"name": om.name, "size": size, "sha256": sha256},
        }
        if kept:
            record["keep_dtype"] = {
                "file": args.keep_dtype,
                "sha256": file_digest(args.keep_dtype, "--keep_dtype file")[1],
                "operators": kept,
            }
        write_json(Path(f"{output}.atc.json"), record, ATC_RECORD)
    print(f"\n{'conversion':<28}  {'om file':<32} result")
    for label, (verdict, om, log) in results.items():
        print(f"{label:<28}  {str(om) if om else '-':<32} {verdict} (log: {log})")
    failed = [label for label, (verdict, _, _) in results.items() if verdict != "ok"]
    if failed:
        print(
            f"{program_name()}: error: {len(failed)} of {len(results)} conversions failed ({', '.join(failed)}): see each one's log above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
