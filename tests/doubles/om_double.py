"""The fake .om format shared by the doubles: one JSON header line, then the ONNX model bytes. NOT a real OM."""

import json

MAGIC = b"OM-TEST-DOUBLE "


def write_om(path, onnx_bytes, meta):
    with open(path, "wb") as f:
        f.write(MAGIC + json.dumps(meta).encode() + b"\n" + onnx_bytes)


def read_om(path):
    data = open(path, "rb").read()
    if not data.startswith(MAGIC):
        raise ValueError("not a test-double om")
    header, onnx_bytes = data[len(MAGIC) :].split(b"\n", 1)
    return json.loads(header), onnx_bytes


_sessions = {}


def gears(path):
    """The dynamic-batch gears of a model, or None for a fixed-batch one."""
    return read_om(path)[0].get("dynamic_batch_size")


def run_om(path, batch, dym_batch=None):
    """Run the model on ONNX Runtime, rounding through float16 for an fp16-precision build.

    A dynamic-batch model runs at gear `dym_batch` (--dymBatch), which must be one of its gears and the batch's rows."""
    import numpy as np
    import onnxruntime as ort

    if path not in _sessions:
        meta, onnx_bytes = read_om(path)
        _sessions[path] = meta, ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    meta, session = _sessions[path]
    expected = list(meta["input_shape"])
    if meta.get("dynamic_batch_size"):
        if dym_batch not in meta["dynamic_batch_size"]:
            raise ValueError(f"dymBatch {dym_batch} is not a gear of the model ({meta['dynamic_batch_size']})")
        expected[0] = dym_batch
    if list(batch.shape) != expected:
        raise ValueError(f"input {list(batch.shape)} does not match the model's {expected}")
    outputs = session.run(None, {meta["input_name"]: batch})
    if meta["precision_mode"] in ("force_fp16", "allow_mix_precision"):
        outputs = [o.astype(np.float16).astype(np.float32) for o in outputs]
    return meta, outputs
