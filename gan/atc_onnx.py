"""What atc will refuse in an ONNX model, found before atc sees it: the opset against the range the CANN version's
atc accepts, every operator against atc's ONNX operator list for the chip, and the input's batch dimension against
the conversions asked for. Each problem is one line naming the node. Reads the protobuf itself (no onnx package:
a CANN host may have none).

Sources (hiascend.com, the CANN documentation):
- opsets: CANN 5.0.4 and 6.0.1 atc accept ONNX opsets 9 to 13 (ONNX 1.8.0), CANN 7.0 opsets 9 to 18 (ONNX 1.12.0)
  (ATC guides: canncommercial 5046 atlasatc_16_0164, 601 atctool_0178, 700 atlasatc_16_0201).
- operators: "支持ONNX算子清单" (supported ONNX operators) of CANN 5.0.4 for Ascend310, the guide's chip and CANN,
  and of CANN 8.0.0 for the Ascend310P family and later chips (URLs below). The lists name operators as the pages
  write them (Argmax, Cumsum, hardmax); they are matched without regard to case.
"""

from gan.onnx_models import _fields

ATC_OPSETS = {"5.0.4": (9, 13), "6.0.1": (9, 13), "7.0": (9, 18)}

_CANN_504 = """Abs Acos Acosh AdaptiveAvgPool2D AdaptiveMaxPool2D Add Addcmul AffineGrid And Argmax Argmin AscendRequantS16
AscendRequant AscendQuant AscendDequantS16 AscendDequant AscendAntiQuant Asin Asinh Atan Atanh AveragePool
BatchNormalization BatchMatMul BatchMultiClassNMS BitShift Cast Ceil Celu Clip Concat ConvTranspose Cumsum Conv Compress
Constant ConstantOfShape Cos Cosh DeformableConv2D Det DepthToSpace Div Dropout Elu EmbeddingBag Equal Erf Exp Expand
EyeLike Flatten Floor Gather GatherND GatherElements Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual HardSigmoid hardmax HardSwish Identity If InstanceNormalization Less LeakyRelu LessOrEqual Log LogSoftMax
LpNormalization LpPool LRN LSTM MatMul Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization Min Mod Mul
Multinomial Neg NonMaxSuppression NonZero Not OneHot Or RandomNormalLike RandomUniformLike RandomUniform Range Reciprocal
ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMin ReduceMean ReduceProd ReduceSumSquare Resize Relu ReduceSum
ReduceMax Reshape ReverseSequence RoiExtractor RoiAlign Round PRelu Scatter ScatterElements ScatterND Shrink Selu Shape
Sigmoid Slice Softmax Softsign Softplus SpaceToDepth Split Sqrt Squeeze Sub Sign Sin Sinh Size Sum Tanh TfIdfVectorizer
Tile ThresholdedRelu TopK Transpose Pad Pow Unsqueeze Where Xor"""
_CANN_800 = """Abs Acos Acosh AdaptiveAvgPool2D Add AffineGrid And Argmax Argmin AscendAntiQuant AscendQuant Asin Asinh Atan
Atanh AveragePool BatchNormalization BatchMultiClassNMS BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Cast Ceil Celu
Clip Compress Concat Constant ConstantOfShape Conv ConvTranspose Corr Cos Cosh Cumsum DeformableConv2D DepthToSpace Det
Div Dropout DynSeqOuter Einsum Elu EmbeddingBag Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND
Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU Hardmax HardSigmoid HardSwish
Identity If InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftMax
LpNormalization LpPool LRN LSTM LSTMP MatMul Max MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization Min Mod
MovingSumWithSigmoid Mul Multinomial Neg NonMaxSuppression NonZero Not OneHot Or Pad Pow RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMean ReduceMin
ReduceProd ReduceSumSquare ReduceSum ReduceMax Relu Reshape Resize ReverseSequence RoiAlign RoiExtractor Round PRelu
Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax SoftmaxCrossEntropyLoss
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TfIdfVectorizer ThresholdedRelu Tile TopK Transpose
Trilu Unsqueeze Where Xor"""
OPERATOR_LISTS = {
    "CANN 5.0.4": (
        "https://www.hiascend.com/doc_center/source/zh/canncommercial/5046/reference/fwoperatorlist/operatorlist_0071.html",
        frozenset(_CANN_504.split()),
    ),
    "CANN 8.0.0": (
        "https://www.hiascend.com/doc_center/source/zh/canncommercial/800/apiref/aolapi/operatorlist_00176.html",
        frozenset(_CANN_800.split()),
    ),
}


def operator_list(soc_version):
    """(name of the list, its URL, the operator names in lower case) for a chip: Ascend310 (the guide's chip) takes
    CANN 5.0.4's list, every later chip (Ascend310P3, Ascend910...) CANN 8.0.0's."""
    name = "CANN 5.0.4" if soc_version == "Ascend310" else "CANN 8.0.0"
    url, names = OPERATOR_LISTS[name]
    return name, url, {n.lower() for n in names}


def _text(value):
    return bytes(value).decode("utf-8", "replace")


def read_structure(content):
    """{opsets: {domain: version}, nodes: [(name, op_type, domain)], inputs: [(name, [dim value or name])]} of a
    serialized ModelProto (the main graph; initializers listed as inputs, as old exporters write them, left out)."""
    opsets, graph = {}, None
    for field, wire, value in _fields(memoryview(content)):
        if field == 8 and wire == 2:  # opset_import: OperatorSetIdProto {domain 1, version 2}
            entry = dict((f, v) for f, _, v in _fields(value))
            opsets[_text(entry.get(1, b""))] = entry.get(2, 1)
        elif field == 7 and wire == 2:
            graph = value
    nodes, inputs, initializers = [], [], set()
    for field, wire, value in _fields(graph if graph is not None else b""):
        if field == 1 and wire == 2:  # NodeProto {name 3, op_type 4, domain 7}
            parts = {f: v for f, w, v in _fields(value) if w == 2 and f in (3, 4, 7)}
            nodes.append((_text(parts.get(3, b"")), _text(parts.get(4, b"")), _text(parts.get(7, b""))))
        elif field == 5 and wire == 2:  # TensorProto, its name in field 8
            initializers.update(_text(v) for f, w, v in _fields(value) if f == 8 and w == 2)
        elif field == 11 and wire == 2:  # ValueInfoProto {name 1, type 2 -> tensor_type 1 -> shape 2 -> dim 1}
            inputs.append(_input_shape(value))
    return {"opsets": opsets, "nodes": nodes, "inputs": [i for i in inputs if i[0] not in initializers]}


def _input_shape(value_info):
    name, dims = "", []
    for field, wire, value in _fields(value_info):
        if field == 1 and wire == 2:
            name = _text(value)
        elif field == 2 and wire == 2:
            for f, _, tensor in _fields(value):
                if f != 1:
                    continue
                for g, _, shape in _fields(tensor):
                    if g != 2:
                        continue
                    for h, _, dim in _fields(shape):
                        if h == 1:
                            parts = {k: v for k, _, v in _fields(dim)}
                            dims.append(parts[1] if 1 in parts else _text(parts.get(2, b"?")))
    return name, dims


def atc_problems(content, cann_version, soc_version, batch_sizes=None, dynamic_batch_size=None):
    """One line per thing atc of `cann_version` for `soc_version` would refuse in the model (empty: none found)."""
    try:
        model = read_structure(content)
    except (ValueError, KeyError, IndexError):
        return ["not an ONNX protobuf atc could read"]
    problems = []
    low, high = ATC_OPSETS[cann_version]
    opset = model["opsets"].get("", model["opsets"].get("ai.onnx"))
    if opset is None:
        problems.append("no ai.onnx opset imported: atc reads ai.onnx operators")
    elif not low <= opset <= high:
        problems.append(
            f"opset {opset}: atc of CANN {cann_version} accepts ai.onnx opsets {low} to {high} "
            f"(export with GAN_pth2onnx.py --opset 11, the TorchScript exporter)"
        )
    list_name, url, known = operator_list(soc_version)
    for index, (name, op_type, domain) in enumerate(model["nodes"]):
        shown = f"node {name or f'#{index}'} ({op_type})"
        if domain not in ("", "ai.onnx"):
            problems.append(f"{shown}: operator domain {domain}: atc reads ai.onnx operators only")
        elif op_type.lower() not in known:
            problems.append(f"{shown}: not in atc's ONNX operator list for {soc_version} ({list_name}: {url})")
    for name, dims in model["inputs"][:1]:
        batch = dims[0] if dims else None
        if isinstance(batch, int) and batch > 0:
            if dynamic_batch_size:
                problems.append(
                    f"input {name}: a fixed batch of {batch}: --dynamic_batch_size needs a dynamic one (-1 in atc's --input_shape)"
                )
            wrong = [b for b in batch_sizes or () if b != batch]
            if wrong and not dynamic_batch_size:
                problems.append(
                    f"input {name}: a fixed batch of {batch}: --input_shape with batch {', '.join(map(str, wrong))} does not match it"
                )
    return problems
