"""Numeric precision: element-wise tolerances and error statistics as Polygraphy reports them, fp16's range, and the
fp16 preview of atc's force_fp16 (with chosen operators kept in fp32, as atc's --keep_dtype keeps them).

Element-wise rule (Polygraphy's `polygraphy run`): an element fails only where its absolute error exceeds atol AND
its relative error exceeds rtol; the relative error is taken against the reference, whose zeros count as 2.2e-16
(float64's epsilon) so that they divide. NaN never passes. Needs numpy; the preview needs onnx.
"""

import math

import numpy as np

POLYGRAPHY_TOLERANCE = 1e-5  # the default --atol and --rtol of polygraphy run
ZERO_REFERENCE = float(np.finfo(np.float64).eps)
FP16_MAX = 65504.0  # the largest finite float16
FP16_SMALLEST_NORMAL = 2.0**-14  # below it float16 holds subnormals (fewer digits), below 2**-25 only zero
QUANTILES = (50, 90, 99)
KEPT_ELEMENTS = 1 << 24  # errors kept for the quantiles: beyond, every k-th element (the statistics say so)

# Operators whose float result the fp16 preview rounds to fp16 (Reshape and Constant only move or name values).
FP16_ROUNDED_OPS = {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "BatchNormalization", "LeakyRelu", "Relu", "Tanh", "Sigmoid"}


def errors_of(reference, values):
    """(absolute, relative) error of `values` against `reference`, element-wise, in float64 (Polygraphy's definitions)."""
    reference, values = np.asarray(reference, np.float64), np.asarray(values, np.float64)
    absolute = np.abs(values - reference)
    magnitude = np.abs(reference)
    with np.errstate(invalid="ignore", over="ignore"):
        relative = absolute / np.where(magnitude == 0, ZERO_REFERENCE, magnitude)
    return absolute, relative


def failing(absolute, relative, atol, rtol):
    """The elements that fail: abs > atol and rel > rtol, or not a number."""
    with np.errstate(invalid="ignore"):
        return ((absolute > atol) & (relative > rtol)) | np.isnan(absolute)


class ErrorStatistics:
    """Element-wise errors of one side against a reference, batch by batch: the count failing atol/rtol, max, mean and
    quantiles of the absolute and relative error, and the smallest atol (at rtol) and rtol (at atol) that pass."""

    def __init__(self, atol=POLYGRAPHY_TOLERANCE, rtol=POLYGRAPHY_TOLERANCE):
        self.atol, self.rtol = atol, rtol
        self.count = self.failing = self.nan = self.inf = 0
        self.sums, self.finite = {"abs": 0.0, "rel": 0.0}, {"abs": 0, "rel": 0}
        self.maxima = {"abs": 0.0, "rel": 0.0}
        self.needed_atol = self.needed_rtol = 0.0  # the largest abs error among elements beyond rtol, and so on
        self.kept, self.stride, self.offset = {"abs": [], "rel": [], "ref": []}, 1, 0

    def add(self, reference, values):
        reference, values = np.asarray(reference, np.float64).ravel(), np.asarray(values, np.float64).ravel()
        self.nan += int(np.isnan(values).sum() + np.isnan(reference).sum())
        self.inf += int(np.isinf(values).sum() + np.isinf(reference).sum())
        absolute, relative = errors_of(reference, values)
        unknown = np.isnan(absolute)  # no tolerance passes it
        self.count += absolute.size
        self.failing += int(failing(absolute, relative, self.atol, self.rtol).sum())
        for name, errors in (("abs", absolute), ("rel", relative)):
            finite = errors[np.isfinite(errors)]
            self.finite[name] += finite.size
            if finite.size:
                self.sums[name] += float(finite.sum())
                self.maxima[name] = max(self.maxima[name], float(finite.max()))
        # an element beyond rtol passes only with atol >= its abs error, and one beyond atol only with rtol >= its
        # relative error (infinite where the reference is too small for its error to divide by)
        with np.errstate(invalid="ignore"):
            beyond_rtol, beyond_atol = (relative > self.rtol) | unknown, (absolute > self.atol) | unknown
        if beyond_rtol.any():
            self.needed_atol = max(self.needed_atol, float(np.where(unknown, np.inf, absolute)[beyond_rtol].max()))
        if beyond_atol.any():
            self.needed_rtol = max(self.needed_rtol, float(np.where(unknown | np.isnan(relative), np.inf, relative)[beyond_atol].max()))
        self._keep(absolute, relative, reference)

    def _keep(self, absolute, relative, reference):
        """Keep every `stride`-th element (all while they fit); halve what is kept, doubling the stride, beyond."""
        start = (-self.offset) % self.stride
        for name, values in (("abs", absolute), ("rel", relative), ("ref", reference)):
            self.kept[name].append(values[start :: self.stride].astype(np.float32))
        self.offset += absolute.size
        while sum(part.size for part in self.kept["abs"]) > KEPT_ELEMENTS:
            for name in self.kept:
                self.kept[name] = [np.concatenate(self.kept[name])[::2]]
            self.stride *= 2

    def kept_values(self, name):
        return np.concatenate(self.kept[name]) if self.kept[name] else np.zeros(0, np.float32)

    def summary(self):
        """The figures, as GAN_compare prints and saves them: max, mean and quantiles over the finite errors (None
        where none is), the tolerances that would pass (None where none does)."""
        figures = {
            "atol": self.atol,
            "rtol": self.rtol,
            "elements": self.count,
            "failing": self.failing,
            "failing_share": self.failing / self.count if self.count else 0.0,
            "nan": self.nan,
            "inf": self.inf,
            "needed_atol": None if math.isinf(self.needed_atol) else self.needed_atol,
            "needed_rtol": None if math.isinf(self.needed_rtol) else self.needed_rtol,  # None: no finite rtol passes
            "quantiles_every": self.stride,
        }
        for name in ("abs", "rel"):
            kept = self.kept_values(name)
            kept = kept[np.isfinite(kept)]
            figures[name] = {
                "max": self.maxima[name],
                "mean": self.sums[name] / self.finite[name] if self.finite[name] else None,
                **{f"p{q}": float(np.percentile(kept, q)) if kept.size else None for q in QUANTILES},
            }
        return figures


def describe_needed(figures):
    """'would pass with atol >= X (at rtol R), or rtol >= Y (at atol A)' or why no tolerance does."""
    atol = "no atol" if figures["needed_atol"] is None else f"atol >= {figures['needed_atol']:.3g}"
    rtol = "no rtol" if figures["needed_rtol"] is None else f"rtol >= {figures['needed_rtol']:.3g}"
    return f"would pass with {atol} (at rtol {figures['rtol']:g}), or {rtol} (at atol {figures['atol']:g})"


# ---------------------------------------------------------------------------------------------------------
# Layer by layer, as msit debug compare measures (Ascend's operator compare).

# msit debug compare's "normal precision" thresholds (value passes when the comparison holds)
MSIT_THRESHOLDS = {"cosine": (">", 0.99), "red": ("<", 0.05), "kld": ("<", 0.005), "rmse": ("<", 1.0), "mean_rel": ("<", 1.0)}
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def operator_compare(ours, reference):
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
        for name, (direction, limit) in MSIT_THRESHOLDS.items()
        if not (metrics[name] > limit if direction == ">" else metrics[name] < limit)
    ]


def fp16_range(values):
    """(overflow, underflow) counts of `values` held in float16: |x| > 65504 becomes Inf; 0 < |x| < 2**-14 loses
    digits (subnormal) or becomes zero."""
    magnitude = np.abs(np.asarray(values, np.float64))
    return int((magnitude > FP16_MAX).sum()), int(((magnitude > 0) & (magnitude < FP16_SMALLEST_NORMAL)).sum())


def smallest_keep_set(candidates, evaluate, exhaustive_up_to=2):
    """The smallest set of `candidates` (operator names, in graph order) to keep in fp32, by `evaluate(keep)` ->
    (passes, figures). Returns (kept or None, its figures, the figures with nothing kept, sets tried, proven).

    Nothing kept first, then all kept (None when even that fails: fp32 throughout does not pass, so fp16 is not the
    cause); then every set of 1 and 2 operators (the smallest passing size is proven; among its passing sets the one
    with the smallest max abs error); beyond, from all kept, each operator dropped in turn, last first, while the
    rest still passes: a set from which no operator can be dropped, not proven the smallest."""
    from itertools import combinations

    tried = {}

    def run(keep):
        if keep not in tried:
            tried[keep] = evaluate(keep)
        return tried[keep]

    passes, baseline = run(())
    if passes:
        return [], baseline, baseline, len(tried), True
    everything = tuple(candidates)
    passes, figures = run(everything)
    if not passes:  # fp32 throughout fails: the model or the preset, not fp16, is the cause
        return None, figures, baseline, len(tried), False
    for size in range(1, min(exhaustive_up_to, len(candidates)) + 1):
        passing = [(run(keep)[1], keep) for keep in combinations(candidates, size) if run(keep)[0]]
        if passing:
            figures, keep = min(passing, key=lambda found: (found[0]["max_abs"], found[1]))
            return list(keep), figures, baseline, len(tried), True
    kept = everything
    for name in reversed(candidates):
        trial = tuple(k for k in kept if k != name)
        passes, trial_figures = run(trial)
        if passes:
            kept, figures = trial, trial_figures
    return list(kept), figures, baseline, len(tried), len(kept) <= exhaustive_up_to + 1


def emulate_fp16(model_bytes, keep=()):
    """The fp16 preview of a model (bytes in, bytes out): weights, the input and every operator's result rounded to
    fp16, the arithmetic inside each operator in fp32 (GAN_pth2onnx.py's docstring). The nodes named in `keep` stay
    fp32, as atc's --keep_dtype keeps them: their weights and result unrounded, their fp32 result rounded where an
    fp16 operator takes it in (the cast atc inserts there)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    keep = set(keep)
    unknown = keep - {node.name for node in graph.node}
    if unknown:
        raise ValueError(f"no node named {sorted(unknown)[0]!r} in the model")
    kept_nodes = [node for node in graph.node if node.name in keep]
    rounded_nodes = [node for node in graph.node if node.name not in keep]
    consumed_by_kept = {name for node in kept_nodes for name in node.input}
    consumed_by_rounded = {name for node in rounded_nodes for name in node.input}
    nodes, renamed = [], {}

    def rounded(name, source, where):
        """Cast `source` to float16 and back, into `name`."""
        half = f"{source}_as_fp16"
        return [
            helper.make_node("Cast", [source], [half], name=f"{where}/round_fp16", to=TensorProto.FLOAT16),
            helper.make_node("Cast", [half], [name], name=f"{where}/back_to_fp32", to=TensorProto.FLOAT),
        ]

    extra = []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or tensor.name not in consumed_by_rounded:
            continue
        with np.errstate(over="ignore"):  # beyond 65504 a weight becomes Inf, as on the chip: the preview shows it
            values = numpy_helper.to_array(tensor).astype(np.float16).astype(np.float32)
        if tensor.name in consumed_by_kept:  # shared with a kept node: the rounded copy for the others
            renamed[tensor.name] = f"{tensor.name}_fp16"
            extra.append(numpy_helper.from_array(values, renamed[tensor.name]))
        else:
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    graph.initializer.extend(extra)
    for graph_input in graph.input:  # the input is rounded once; every fp16 consumer reads the rounded value
        if graph_input.name in consumed_by_rounded:
            renamed[graph_input.name] = f"{graph_input.name}_fp16"
            nodes += rounded(renamed[graph_input.name], graph_input.name, graph_input.name)
    kept_results = {name for node in kept_nodes if node.op_type in FP16_ROUNDED_OPS for name in node.output[:1]}
    casts_before = {}  # a kept node's fp32 result enters an fp16 operator through a rounding cast, just before it
    for node in rounded_nodes:
        for position, name in enumerate(node.input):
            if name in kept_results and node.op_type in FP16_ROUNDED_OPS:
                renamed_input = f"{name}_into_{node.name or node.output[0]}_fp16"
                casts_before.setdefault(id(node), []).extend(rounded(renamed_input, name, f"{node.name or node.output[0]}/{name}"))
                node.input[position] = renamed_input
            elif name in renamed:
                node.input[position] = renamed[name]
    for node in graph.node:
        nodes += casts_before.get(id(node), [])
        if node.name in keep or node.op_type not in FP16_ROUNDED_OPS:
            nodes.append(node)
            continue
        for attribute in node.attribute:  # constants the chip holds in fp16: LeakyReLU's alpha, BatchNorm's eps
            if attribute.type == onnx.AttributeProto.FLOAT and attribute.name in ("alpha", "epsilon"):
                attribute.f = float(np.float16(attribute.f))
        result = node.output[0]
        node.output[0] = f"{result}_fp32"
        nodes += [node, *rounded(result, node.output[0], node.name or result)]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()
