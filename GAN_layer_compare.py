"""Layer by layer: where does an ONNX model (fp32, folded, int8, fp16 preview) part from PyTorch?

    python GAN_layer_compare.py --pth weights/generator_mnist.pth --onnx GAN.onnx --input vectors/0.bin
    python GAN_layer_compare.py --pth weights/generator_mnist.pth --onnx GAN_int8.onnx --input vectors/0.bin --csv int8_layers.csv

The same batch runs through the PyTorch generator in fp64 (the reference) and in fp32, and through the ONNX
model on ONNX Runtime with every intermediate tensor exposed (each node's output added as a graph output
of a copy held in memory, as msit debug compare does). ONNX nodes are mapped to the PyTorch layers by the
network's structure, which holds for every variant the exporter writes: the k-th activation (LeakyRelu,
Tanh) is the k-th activation layer, the node that produces its input is the layer before it (BatchNorm1d,
or a Linear; a Linear with its BatchNorm1d folded in for --fold and int8 models), and a node feeding a
BatchNormalization is its Linear. Casts between them (the fp16 preview's rounding) are looked through.

Per layer: shape, cosine similarity, max and mean absolute error, max and mean relative error, relative
Euclidean distance, KL divergence and RMSE of the ONNX tensor against the fp64 reference, with the
definitions of Ascend's operator compare (relative error |x/y - 1| where |y| > float32 eps, else 0; KL
divergence of the min-max-normalised tensors, the reference as the second distribution), and PyTorch
fp32's own max abs error for scale. Values beyond msit's "normal precision" thresholds (cosine > 0.99,
RED < 0.05, KLD < 0.005, RMSE < 1.0, mean relative error < 1.0) are marked with '!', and the first layer
that breaks one is named. Needs torch (the PyTorch side).
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import csv
import io
import sys
from pathlib import Path

from gan.cli import HelpFormatter, InputError, check_output_file, refuse_overlap, require_modules, run_main


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    parser.add_argument("--pth", required=True, help="generator checkpoint the ONNX model was exported from")
    parser.add_argument("--onnx", required=True, help="ONNX model: GAN.onnx, a --fold'ed one, GAN_int8.onnx or GAN_fp16emu.onnx")
    parser.add_argument("--input", default=None, help="one input batch, float32 (rows, 100): vectors/<i>.bin (needed unless --advise)")
    parser.add_argument("--csv", default=None, help="also write the table as CSV here")
    parser.add_argument(
        "--advise",
        choices=["fp32", "fp16", "int8"],
        default=None,
        help="find the operators atc should keep in fp32 for the fp16 preview to pass this preset of GAN_compare.py (default: none)",
    )
    parser.add_argument(
        "--keep_dtype",
        default="keep_dtype.cfg",
        help="with --advise: write them here, as atc's --keep_dtype file (default: keep_dtype.cfg)",
    )
    return parser


require_modules(__name__, get_args_parser, "torch", "onnx")  # before the imports that need them: --help works without

import numpy as np
import torch

from gan.files import LATENT_DIM, atomic_path, check_finite, latent_batch, read_bin
from gan.onnx_models import ModelFile, external_data_locations, model_signature, onnx_session, read_model
from gan.perf import describe_cpu
from gan.precision import FP16_ROUNDED_OPS, breaches, emulate_fp16, fp16_range, smallest_keep_set
from gan.precision import operator_compare as compare
from models import load_generator

ACTIVATIONS = {"LeakyRelu", "Tanh", "Relu", "Sigmoid"}
PASS_THROUGH = {"Cast", "Identity"}
COLUMNS = ("cosine", "max_abs", "mean_abs", "max_rel", "mean_rel", "red", "kld", "rmse")


def expose_all_outputs(original):
    """A copy of the model with every node's output also a graph output (msit's way of dumping an ONNX model)."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(original)
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    return model


def run_all_tensors(model_file, batch, model):
    """{tensor name: value} of every node output of `model` (the model file with every output exposed) on `batch`."""
    session = onnx_session(ModelFile(model.SerializeToString(), model_file.folder, model_file.name))
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: batch})
    return dict(zip(names, values))


def pytorch_layers(generator, batch, dtype):
    """[(index, module, output)] of every layer of generator.model on `batch`, in `dtype`."""
    import copy

    model = copy.deepcopy(generator).to(dtype).eval()
    outputs = []
    x = torch.from_numpy(batch).to(dtype)
    with torch.no_grad():
        for index, module in enumerate(model.model):
            x = module(x.clone())  # LeakyReLU is in-place in gan.py: keep each layer's output apart
            outputs.append((index, module, x.numpy().astype(np.float64)))
    return outputs


def map_layers(graph, layers):
    """[(label, node, tensor name, layer index)] for every ONNX node that has a PyTorch counterpart."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def source(tensor):
        """The node that computed `tensor`, looking through casts."""
        node = producers.get(tensor)
        while node is not None and node.op_type in PASS_THROUGH:
            node = producers.get(node.input[0])
        return node

    def settled(tensor):
        """`tensor` after the casts that follow it (the fp16 preview's rounding)."""
        while len(consumers.get(tensor, [])) == 1 and consumers[tensor][0].op_type in PASS_THROUGH:
            tensor = consumers[tensor][0].output[0]
        return tensor

    anchors = [n for n in graph.node if n.op_type in ACTIVATIONS]
    torch_activations = [i for i, m, _ in layers if type(m).__name__ in ("LeakyReLU", "Tanh", "ReLU", "Sigmoid")]
    if len(anchors) != len(torch_activations):
        raise InputError(
            f"the ONNX model has {len(anchors)} activations and the generator {len(torch_activations)}: not a model of this generator"
        )
    kinds = {i: type(m).__name__ for i, m, _ in layers}
    rows = []
    for anchor, act in zip(anchors, torch_activations):
        before = source(anchor.input[0])
        if before is not None and act - 1 >= 0 and act - 1 not in torch_activations:
            index = act - 1
            if kinds[index] == "BatchNorm1d" and before.op_type == "BatchNormalization":
                linear = source(before.input[0])
                if linear is not None and index - 1 >= 0 and kinds[index - 1] == "Linear":
                    rows.append((f"model.{index - 1} Linear", linear, before.input[0], index - 1))
                rows.append((f"model.{index} BatchNorm1d", before, anchor.input[0], index))
            elif kinds[index] == "BatchNorm1d":  # folded: one node computes Linear and BatchNorm1d
                rows.append((f"model.{index - 1}+{index} Linear+BatchNorm1d", before, anchor.input[0], index))
            else:
                rows.append((f"model.{index} {kinds[index]}", before, anchor.input[0], index))
        rows.append((f"model.{act} {kinds[act]}", anchor, settled(anchor.output[0]), act))
    return rows


def layer_input_model(model, producer, tensor):
    """A copy of `model` in which the tensor that `producer` computes is a graph input (the layer after it is fed
    from outside) and `tensor` the one output; the casts after the producer (the preview's rounding) still apply."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        node.output[:] = [f"{name}/replaced" if name == producer else name for name in node.output]
    copy.graph.input.append(onnx.helper.make_tensor_value_info(producer, onnx.TensorProto.FLOAT, None))
    del copy.graph.output[:]
    copy.graph.output.append(onnx.ValueInfoProto(name=tensor))
    return copy.SerializeToString()


def own_errors(model_file, model, mapped, reference, batch):
    """[metrics] per row of each layer fed the fp64 reference of the layer before it (cast to float32): its own
    error, apart from what it inherits (msit's -single). The first layer reads the input itself: its own error is
    its error."""
    feeds, own = {model.graph.input[0].name: batch}, [None]
    for (_, before, _, before_index), (_, _, tensor, index) in zip(mapped, mapped[1:]):
        session = onnx_session(ModelFile(layer_input_model(model, before.output[0], tensor), model_file.folder, model_file.name))
        fed = {**feeds, before.output[0]: reference[before_index][2].astype(np.float32)}
        own.append(compare(session.run([tensor], fed)[0].astype(np.float64), reference[index][2]))
    return own


def fp16_counts(values, modules):
    """{fp16_overflow, fp16_underflow} of a layer's exact (fp64) output, and of its modules' parameters and buffers."""
    tensors = [t.detach().double().numpy() for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))]
    tensors = [t for t in tensors if t.dtype.kind == "f"]
    params = np.concatenate([t.ravel() for t in tensors]) if tensors else np.zeros(0)
    (over, under), (param_over, param_under) = fp16_range(values), fp16_range(params)
    return {"fp16_overflow": over, "fp16_underflow": under, "param_fp16_overflow": param_over, "param_fp16_underflow": param_under}


def layer_table(pth, onnx_model, batch):
    """[row dict] per mapped ONNX operator: metrics against fp64 as carried through the model and as the layer's own
    (fed the reference's input), fp16's range on the layer, PyTorch fp32's max abs for scale."""
    generator = load_generator(pth)
    reference = pytorch_layers(generator, batch, torch.float64)
    fp32 = {i: out for i, _, out in pytorch_layers(generator, batch, torch.float32)}
    if isinstance(onnx_model, bytes):
        model_file = ModelFile(onnx_model, None, "the model")
    else:
        model_file = read_model(onnx_model)  # with its folder, for weights kept as external data
    # the one check every consumer of a model makes: one float32 (batch, 100) input, float outputs
    signature = model_signature(onnx_session(model_file), model_file.name, features=LATENT_DIM)
    if signature.fixed_batch is not None and signature.fixed_batch != len(batch):
        raise InputError(f"{model_file.name}: takes batches of exactly {signature.fixed_batch}, the input holds {len(batch)} rows")
    model = load_onnx(model_file)
    mapped = map_layers(model.graph, reference)  # before running: a model of another network is refused as such
    tensors = run_all_tensors(model_file, batch, expose_all_outputs(model))
    own = own_errors(model_file, model, mapped, reference, batch)
    rows = []
    for (label, node, tensor, index), own_metrics in zip(mapped, own):
        ours = tensors[tensor].astype(np.float64)
        expected = reference[index][2]
        if ours.shape != expected.shape:
            raise InputError(f"{label}: the ONNX tensor {tensor} is {ours.shape}, the PyTorch layer's output {expected.shape}")
        metrics = compare(ours, expected)
        own_metrics = own_metrics or metrics
        modules = [reference[i][1] for i in ((index - 1, index) if "+" in label else (index,))]
        rows.append(
            {
                "layer": label,
                "onnx_node": node.name or node.output[0],
                "op_type": node.op_type,
                "tensor": tensor,
                "shape": "x".join(map(str, ours.shape)),
                **metrics,
                "own": own_metrics,
                "pytorch_fp32_max_abs": float(np.abs(fp32[index] - expected).max()),
                "over_threshold": breaches(metrics),
                "own_over_threshold": breaches(own_metrics),
                **fp16_counts(expected, modules),
            }
        )
    return rows


def load_onnx(model_file):
    """The ONNX ModelProto of a ModelFile, its external data read from the model's own folder; one line if not ONNX."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    try:
        model = onnx.load_from_string(model_file.content)
        if model_file.folder is not None and external_data_locations(model_file.content):
            load_external_data_for_model(model, model_file.folder)
        return model
    except Exception as err:  # noqa: BLE001 - protobuf raises various errors on a file that is not ONNX
        raise InputError(f"{model_file.name}: not a readable ONNX model ({type(err).__name__})") from None


def format_table(rows):
    def cell(row, name):
        value = row[name]
        mark = "!" if name in row["over_threshold"] else ""
        return f"{value:.7f}{mark}" if name == "cosine" else f"{value:.3e}{mark}"

    def own(row):
        mark = "!" if row["own_over_threshold"] else ""
        return f"{row['own']['cosine']:.7f}{mark}"

    header = (
        f"{'layer':<30} {'onnx op':<18} {'shape':<9} "
        + " ".join(f"{c:>12}" for c in COLUMNS)
        + f" {'torch fp32':>11} {'own cosine':>11} {'own max_abs':>11} {'fp16 over':>11} {'fp16 under':>12}"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['layer'][:30]:<30} {row['op_type'][:18]:<18} {row['shape']:<9} "
            + " ".join(f"{cell(row, c):>12}" for c in COLUMNS)
            + f" {row['pytorch_fp32_max_abs']:>11.3e} {own(row):>11} {row['own']['max_abs']:>11.3e}"
            + f" {row['fp16_overflow']:>5}+{row['param_fp16_overflow']:<5} {row['fp16_underflow']:>6}+{row['param_fp16_underflow']:<5}"
        )
    return lines


CSV_COLUMNS = {
    "cosine": "CosineSimilarity",
    "max_abs": "MaxAbsoluteError",
    "mean_abs": "MeanAbsoluteError",
    "max_rel": "MaxRelativeError",
    "mean_rel": "MeanRelativeError",
    "red": "RelativeEuclideanDistance",
    "kld": "KullbackLeiblerDivergence",
    "rmse": "RootMeanSquareError",
}
COUNTS = {
    "fp16_overflow": "Fp16OverflowValues",
    "fp16_underflow": "Fp16UnderflowValues",
    "param_fp16_overflow": "Fp16OverflowParameters",
    "param_fp16_underflow": "Fp16UnderflowParameters",
}


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["layer", "onnx_node", "op_type", "tensor", "shape", *CSV_COLUMNS.values(), "PyTorchFp32MaxAbsoluteError", "OverThreshold"]
        + [f"Own{name}" for name in CSV_COLUMNS.values()]
        + ["OwnOverThreshold", *COUNTS.values()]
    )
    for row in rows:
        writer.writerow(
            [row["layer"], row["onnx_node"], row["op_type"], row["tensor"], row["shape"]]
            + [f"{row[c]:.9g}" for c in COLUMNS]
            + [f"{row['pytorch_fp32_max_abs']:.9g}", ";".join(row["over_threshold"])]
            + [f"{row['own'][c]:.9g}" for c in COLUMNS]
            + [";".join(row["own_over_threshold"]), *(row[c] for c in COUNTS)]
        )
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def describe_first(rows):
    """Lines naming the first layer beyond msit's thresholds, whether the error is its own or carried, and fp16's range."""
    first = next((row for row in rows if row["over_threshold"]), None)
    lines = []
    if first is None:
        lines.append("first layer over a threshold: none")
    else:
        where = f"{first['layer']} ({first['op_type']} {first['onnx_node']})"
        if first["own_over_threshold"]:
            cause = f"its own error (fed the fp64 reference's input) breaks {', '.join(first['own_over_threshold'])}: the error starts here"
        else:
            cause = "its own error (fed the fp64 reference's input) is within every threshold: the error is carried from the layers before"
        lines.append(f"first layer over a threshold: {where}: {', '.join(first['over_threshold'])}; {cause}")
    for row in rows:
        if row["fp16_overflow"] or row["param_fp16_overflow"]:
            lines.append(
                f"fp16 overflow (|x| > 65504): {row['layer']} ({row['onnx_node']}): {row['fp16_overflow']} output values, "
                f"{row['param_fp16_overflow']} parameters"
            )
    return lines


# --advise: the layers atc should keep in fp32 (its --keep_dtype) for the fp16 preview to pass a preset

REFUSED_FOR_ADVICE = {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger"}


def advise(pth, onnx_path, preset):
    """(kept node names or None, figures of the advice, figures with nothing kept, sets tried, proven smallest,
    candidates): the smallest set of operators whose fp32 keeps the fp16 preview within `preset` over the guide's
    workload, searched by gan/precision.smallest_keep_set."""
    from GAN_compare import TOLERANCES, Agreement, judge
    from GAN_pth2onnx import WORKLOAD_BATCH_SIZE, WORKLOAD_BATCHES, WORKLOAD_SEED

    model_file = read_model(onnx_path)
    signature = model_signature(onnx_session(model_file), model_file.name, features=LATENT_DIM)
    model = load_onnx(model_file)
    variant = sorted({n.op_type for n in model.graph.node} & REFUSED_FOR_ADVICE)
    if any(n.op_type == "Cast" and any(a.name == "to" and a.i == 10 for a in n.attribute) for n in model.graph.node):
        variant.append("casts to float16")  # 10: TensorProto.FLOAT16, the preview's rounding
    if variant:
        raise InputError(
            f"{onnx_path}: holds {', '.join(variant)}: not the fp32 export that atc converts (advise on GAN.onnx, not on a preview or an int8 model)"
        )
    candidates = [n.name for n in model.graph.node if n.op_type in FP16_ROUNDED_OPS and n.name]
    if not candidates:
        raise InputError(f"{onnx_path}: no named operator that fp16 rounds: nothing atc's --keep_dtype could name")
    images = WORKLOAD_BATCHES * WORKLOAD_BATCH_SIZE
    chunk = signature.fixed_batch or 10 * WORKLOAD_BATCH_SIZE  # a set whose max abs error is already too large stops early
    if images % chunk:
        raise InputError(
            f"{onnx_path}: takes batches of exactly {chunk}, which do not divide the guide's {WORKLOAD_BATCHES} x {WORKLOAD_BATCH_SIZE}"
        )
    latents = np.concatenate([latent_batch(WORKLOAD_SEED, i, WORKLOAD_BATCH_SIZE) for i in range(WORKLOAD_BATCHES)])
    generator = load_generator(pth)
    with torch.inference_mode():  # PyTorch fp32: the online reference of the pipeline
        expected = generator(torch.from_numpy(latents)).numpy().astype(np.float64).reshape(images, -1)
    content = model.SerializeToString()

    max_abs_limit = TOLERANCES[preset][0]

    def evaluate(keep):
        """(passes, figures) of the preview with `keep` unrounded; a set other than none or all (whose figures are
        printed) stops at the first chunk beyond the max abs limit: it fails whatever the rest holds."""
        session = onnx_session(ModelFile(emulate_fp16(content, keep), None, model_file.name))
        name = session.get_inputs()[0].name
        agreement, seen = Agreement(), 0
        for start in range(0, images, chunk):
            got = session.run(None, {name: latents[start : start + chunk]})[0].astype(np.float64)
            agreement.add(expected[start : start + chunk].ravel(), got.ravel())
            seen += chunk
            worst = agreement.overall()["max_abs"]
            if 0 < len(keep) < len(candidates) and not worst <= max_abs_limit:
                break
        figures = {"images": seen, **agreement.overall()}
        finite = all(np.isfinite(v) for v in figures.values())
        passed = seen == images and finite and judge(figures["max_abs"], figures["mean_abs"], figures["cosine"], TOLERANCES[preset])
        return passed, figures

    return (*smallest_keep_set(candidates, evaluate), candidates)


def print_advice(args, kept, figures, baseline, tried, proven, candidates):
    from GAN_compare import TOLERANCES, describe_limits

    def said(f):
        return f"max abs {f['max_abs']:.3e}, mean abs {f['mean_abs']:.3e}, cosine {f['cosine']:.7f}"

    print(
        f"fp16 preview of {args.onnx} with nothing kept, on the guide's workload ({baseline['images']:,} images, seed 0) against "
        f"PyTorch: {said(baseline)}; the {args.advise} preset: {describe_limits(TOLERANCES[args.advise])} (on {describe_cpu()})"
    )
    if kept is None:
        raise InputError(
            f"{args.onnx}: no set of operators kept in fp32 passes the {args.advise} preset, not even all {len(candidates)} "
            f"({said(figures)}): nothing written"
        )
    if not kept:
        print(f"PASS: the fp16 preview passes the {args.advise} preset with no operator kept: no --keep_dtype needed; nothing written")
        return
    with atomic_path(args.keep_dtype) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in kept))
    how = "the smallest set" if proven else "a set from which no operator can be dropped, not proven the smallest"
    print(f"keep in fp32 ({how}; {tried} sets of the {len(candidates)} operators tried): {', '.join(kept)}")
    print(f"PASS: with them kept, {said(figures)}: within the {args.advise} preset")
    print(f"wrote {args.keep_dtype} (one operator name of {args.onnx} per line, as atc's --keep_dtype reads them)")
    if len(kept) == len(candidates):
        print("  every operator is kept: atc's --precision_mode must_keep_origin_dtype (fp32 throughout) does the same")
    print(f"convert with: bash atc_convert.sh --onnx {args.onnx} --keep_dtype {args.keep_dtype}")
    print(f"  (atc ... --precision_mode=force_fp16 --keep_dtype={args.keep_dtype}; must_keep_origin_dtype would ignore it)")


def layer_report(args):
    batch = check_finite(read_bin(args.input, LATENT_DIM, "input file"), args.input).copy()
    rows = layer_table(args.pth, args.onnx, batch)
    print(
        f"{Path(args.onnx).name} against PyTorch fp64 on {args.input} ({len(batch)} rows); '!' marks a value beyond msit's "
        f"normal-precision thresholds (cosine > 0.99, RED < 0.05, KLD < 0.005, RMSE < 1.0, mean rel < 1.0); 'own': the layer "
        f"fed the fp64 reference's input; 'fp16 over/under': output values + parameters beyond fp16's range"
    )
    print("\n".join(format_table(rows)))
    print("\n".join(describe_first(rows)))
    worst = max(rows, key=lambda row: row["max_abs"])
    print(f"largest max abs error: {worst['layer']} ({worst['op_type']}), {worst['max_abs']:.3e}")
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")


def main(args):
    outputs = [(flag, path) for flag, path in (("--csv", args.csv), ("--keep_dtype", args.keep_dtype if args.advise else None)) if path]
    for flag, path in outputs:
        check_output_file(path, flag)
    refuse_overlap([("--pth", args.pth), ("--onnx", args.onnx), ("--input", args.input)], outputs)
    if args.input is None and not args.advise:
        raise InputError("--input: one input batch is needed for the layer table (vectors/<i>.bin), unless --advise is given")
    if args.input is not None:
        layer_report(args)
    if args.advise:
        print_advice(args, *advise(args.pth, args.onnx, args.advise))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
