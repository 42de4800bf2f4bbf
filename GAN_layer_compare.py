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
    parser.add_argument("--input", required=True, help="one input batch, float32 (rows, 100): vectors/<i>.bin")
    parser.add_argument("--csv", default=None, help="also write the table as CSV here")
    return parser


require_modules(__name__, get_args_parser, "torch", "onnx")  # before the imports that need them: --help works without

import numpy as np
import torch

from gan.files import LATENT_DIM, atomic_path, check_finite, read_bin
from gan.onnx_models import ModelFile, model_signature, onnx_session, read_model
from models import load_generator

# msit debug compare's "normal precision" thresholds (value passes when the comparison holds)
THRESHOLDS = {"cosine": (">", 0.99), "red": ("<", 0.05), "kld": ("<", 0.005), "rmse": ("<", 1.0), "mean_rel": ("<", 1.0)}
ACTIVATIONS = {"LeakyRelu", "Tanh", "Relu", "Sigmoid"}
PASS_THROUGH = {"Cast", "Identity"}
FLOAT32_EPS = float(np.finfo(np.float32).eps)
COLUMNS = ("cosine", "max_abs", "mean_abs", "max_rel", "mean_rel", "red", "kld", "rmse")


def compare(ours, reference):
    """Ascend operator-compare metrics of `ours` against `reference` (both float64, same shape)."""
    x, y = ours.ravel(), reference.ravel()
    diff = x - y
    relative = np.where(np.abs(y) > FLOAT32_EPS, np.abs(diff) / np.where(np.abs(y) > FLOAT32_EPS, np.abs(y), 1.0), 0.0)
    norm_x, norm_y = np.linalg.norm(x), np.linalg.norm(y)
    cosine = float(x @ y / (norm_x * norm_y)) if norm_x and norm_y else (1.0 if norm_x == norm_y else 0.0)
    return {
        "cosine": cosine,
        "max_abs": float(np.abs(diff).max()),
        "mean_abs": float(np.abs(diff).mean()),
        "max_rel": float(relative.max()),
        "mean_rel": float(relative.mean()),
        "red": float(np.linalg.norm(diff) / norm_y) if norm_y else float("inf"),
        "kld": kl_divergence(x, y),
        "rmse": float(np.sqrt(np.mean(diff**2))),
    }


def kl_divergence(ours, reference):
    """KL(ours || reference) of the min-max-normalised tensors as probability distributions (operator compare's)."""

    def distribution(values):
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) if high > low else values
        scaled = np.maximum(scaled, FLOAT32_EPS)
        return scaled / scaled.sum()

    p, q = distribution(ours), distribution(reference)
    return float((p * np.log(p / q)).sum())


def breaches(metrics):
    """The metrics beyond msit's normal-precision thresholds."""
    return [
        name
        for name, (direction, limit) in THRESHOLDS.items()
        if not (metrics[name] > limit if direction == ">" else metrics[name] < limit)
    ]


def expose_all_outputs(model_bytes):
    """The model with every node's output also a graph output (msit's way of dumping an ONNX model)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
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


def layer_table(pth, onnx_model, batch):
    """[row dict] per mapped ONNX operator: metrics against fp64, PyTorch fp32's max abs for scale."""
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
    try:
        model = expose_all_outputs(model_file.content)
    except Exception as err:  # noqa: BLE001 - protobuf raises various errors on a file that is not ONNX
        raise InputError(f"{model_file.name}: not a readable ONNX model ({type(err).__name__})") from None
    mapped = map_layers(model.graph, reference)  # before running: a model of another network is refused as such
    tensors = run_all_tensors(model_file, batch, model)
    rows = []
    for label, node, tensor, index in mapped:
        ours = tensors[tensor].astype(np.float64)
        expected = reference[index][2]
        if ours.shape != expected.shape:
            raise InputError(f"{label}: the ONNX tensor {tensor} is {ours.shape}, the PyTorch layer's output {expected.shape}")
        metrics = compare(ours, expected)
        rows.append(
            {
                "layer": label,
                "onnx_node": node.name or node.output[0],
                "op_type": node.op_type,
                "tensor": tensor,
                "shape": "x".join(map(str, ours.shape)),
                **metrics,
                "pytorch_fp32_max_abs": float(np.abs(fp32[index] - expected).max()),
                "over_threshold": breaches(metrics),
            }
        )
    return rows


def format_table(rows):
    def cell(row, name):
        value = row[name]
        mark = "!" if name in row["over_threshold"] else ""
        return f"{value:.7f}{mark}" if name == "cosine" else f"{value:.3e}{mark}"

    header = f"{'layer':<30} {'onnx op':<18} {'shape':<9} " + " ".join(f"{c:>12}" for c in COLUMNS) + f" {'torch fp32':>11}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['layer'][:30]:<30} {row['op_type'][:18]:<18} {row['shape']:<9} "
            + " ".join(f"{cell(row, c):>12}" for c in COLUMNS)
            + f" {row['pytorch_fp32_max_abs']:>11.3e}"
        )
    return lines


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "layer",
            "onnx_node",
            "op_type",
            "tensor",
            "shape",
            "CosineSimilarity",
            "MaxAbsoluteError",
            "MeanAbsoluteError",
            "MaxRelativeError",
            "MeanRelativeError",
            "RelativeEuclideanDistance",
            "KullbackLeiblerDivergence",
            "RootMeanSquareError",
            "PyTorchFp32MaxAbsoluteError",
            "OverThreshold",
        ]
    )
    for row in rows:
        writer.writerow(
            [
                row["layer"],
                row["onnx_node"],
                row["op_type"],
                row["tensor"],
                row["shape"],
                *(f"{row[c]:.9g}" for c in COLUMNS),
                f"{row['pytorch_fp32_max_abs']:.9g}",
                ";".join(row["over_threshold"]),
            ]
        )
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def main(args):
    if args.csv:
        check_output_file(args.csv, "--csv")
        refuse_overlap([("--pth", args.pth), ("--onnx", args.onnx), ("--input", args.input)], [("--csv", args.csv)])
    batch = check_finite(read_bin(args.input, LATENT_DIM, "input file"), args.input).copy()
    rows = layer_table(args.pth, args.onnx, batch)
    print(
        f"{Path(args.onnx).name} against PyTorch fp64 on {args.input} ({len(batch)} rows); '!' marks a value beyond msit's "
        f"normal-precision thresholds (cosine > 0.99, RED < 0.05, KLD < 0.005, RMSE < 1.0, mean rel < 1.0)"
    )
    print("\n".join(format_table(rows)))
    first = next((row for row in rows if row["over_threshold"]), None)
    worst = max(rows, key=lambda row: row["max_abs"])
    if first:
        print(
            f"first layer over a threshold: {first['layer']} ({first['op_type']} {first['onnx_node']}): "
            f"{', '.join(first['over_threshold'])}"
        )
    else:
        print("first layer over a threshold: none")
    print(f"largest max abs error: {worst['layer']} ({worst['op_type']}), {worst['max_abs']:.3e}")
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args_parser()))
