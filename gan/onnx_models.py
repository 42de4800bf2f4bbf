"""ONNX models: read with their own folder, run on ONNX Runtime, and checked before anything runs.

A model is read as bytes (ONNX Runtime and onnx take no path that is not valid UTF-8) together with its
folder: weights kept as external data (a `weights.data` beside the model) are looked up in the model's own
folder, never in the working directory, and a location that leads outside that folder (an absolute path,
`..`, a link pointing out) is refused in one line. model_signature() is the one check of what a model takes
and gives (input count, name, dtype, rank; outputs' dtypes), used by every consumer of a model before it
runs. Needs numpy and onnxruntime (no onnx, no torch).
"""

import os
from dataclasses import dataclass

from gan.cli import InputError
from gan.files import one_line_reason, read_bytes

# ModelProto wire layout, as far as external data can hide in it: {message: {field number: sub-message}}.
# TensorProto.external_data (13) holds key/value entries; the key "location" names the data file.
_SUBMESSAGES = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}
_MAX_NESTING = 64


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """(field number, wire type, value) of one protobuf message; value is bytes for length-delimited fields."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > end or field == 0:
            raise ValueError("truncated field")
        yield field, wire, value


def external_data_locations(content):
    """The `location` of every tensor kept as external data in a serialized ONNX model (any graph, any depth)."""
    locations, stack = [], [("model", memoryview(content), 0)]
    while stack:
        kind, data, depth = stack.pop()
        if depth > _MAX_NESTING:
            raise ValueError("graphs nested too deeply")
        entry = {}
        for field, wire, value in _fields(data):
            sub = _SUBMESSAGES[kind].get(field)
            if kind == "entry" and wire == 2 and field in (1, 2):
                entry[field] = bytes(value)
            elif sub is not None and wire == 2:
                stack.append((sub, value, depth + 1))
        if kind == "entry" and entry.get(1) == b"location":
            locations.append(entry.get(2, b"").decode("utf-8", "surrogateescape"))
    return locations


@dataclass
class ModelFile:
    """A model's bytes, the folder its external data must come from, and the name to print."""

    content: bytes
    folder: str
    name: str


def read_model(path, what="ONNX model"):
    """A model file as ModelFile, refusing external data that would come from outside the model's own folder.

    The path is resolved once, first: a model reached through a link is read, with its external data, from the
    folder it really lies in (a `weights.data` beside the link is not its data)."""
    real = os.path.realpath(path)
    content = read_bytes(real, what)
    folder = os.path.dirname(real)
    try:
        locations = external_data_locations(content)
    except (ValueError, KeyError):
        raise InputError(f"{path}: not a loadable {what} (not an ONNX protobuf)") from None
    for location in locations:
        if "\x00" in location:
            raise InputError(f"{path}: its external data location {location!r} holds a NUL byte: not a file name; the model is damaged")
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([target, folder]) != folder:
            raise InputError(
                f"{path}: its external data {location!r} lies outside the model's folder {folder}: refused (a model reads "
                f"its weights from its own folder only)"
            )
        if not os.path.isfile(target):
            raise InputError(f"{path}: its external data {location!r} is missing from the model's folder {folder}")
    if locations:
        try:
            folder.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{path}: keeps its weights as external data in a folder whose name is not valid UTF-8: rename it") from None
    # ONNX Runtime is told the folder only where there is external data: a model without any never reads a file
    return ModelFile(content, folder if locations else None, str(path))


def onnx_session(model, threads=0, what="ONNX model"):
    """An ONNX Runtime CPU session of a model (a path, a ModelFile, or bytes made in memory, which may not hold
    external data); one clear error if it is not one."""
    import onnxruntime as ort

    if isinstance(model, bytes):
        if external_data_locations(model):
            raise InputError("the model made in memory refers to external data: save it beside its data and load it from there")
        model = ModelFile(model, None, f"the {what} made in memory")
    elif not isinstance(model, ModelFile):
        model = read_model(model, what)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # external data from the model's own folder, not the working directory (ONNX Runtime >= 1.21)
    if model.folder is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", model.folder)
    try:
        return ort.InferenceSession(model.content, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
        raise InputError(f"{model.name}: not a loadable {what} ({one_line_reason(err)})") from None


@dataclass
class Signature:
    """What a (batch, features) -> outputs model takes and gives."""

    input_name: str
    features: int
    fixed_batch: int | None
    output_names: list
    output_dtypes: list  # numpy dtypes
    output_shapes: list


def model_signature(session, path, features=None, input_name=None):
    """Check a session's inputs and outputs before anything runs: one float32 input of rank 2 (batch, features),
    with `features` and `input_name` where given; outputs float32 or float16 with the batch first. One line if not."""
    import numpy as np

    inputs = session.get_inputs()
    found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "none"
    if len(inputs) != 1:
        raise InputError(f"{path}: expected one input of shape (batch, features), found {len(inputs)}: {found}")
    (signature,) = inputs
    shape = signature.shape
    if signature.type != "tensor(float)" or len(shape) != 2 or not isinstance(shape[1], int) or shape[1] <= 0:
        raise InputError(f"{path}: expected one float32 input of shape (batch, features), found {found}")
    if features is not None and shape[1] != features:
        raise InputError(f"{path}: its input {signature.name} takes {shape[1]} values per row, expected {features} (a latent vector)")
    if input_name is not None and signature.name != input_name:
        raise InputError(f"{path}: its input is named {signature.name!r}, expected {input_name!r}")
    outputs = session.get_outputs()
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
    bad = [f"{o.name} {o.type}" for o in outputs if o.type not in dtypes or not o.shape]
    if not outputs or bad:
        raise InputError(f"{path}: expected float32 or float16 outputs with the batch first, found {bad or 'none'}")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return Signature(
        signature.name, shape[1], batch, [o.name for o in outputs], [dtypes[o.type] for o in outputs], [o.shape for o in outputs]
    )
