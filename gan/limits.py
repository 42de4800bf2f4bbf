"""This machine's limits for a model of dense layers, measured in the same run as the figures they bound.

A limit is the best rate any engine at hand reaches on the operation that bounds the model, so that no engine can
honestly beat it: fp32 compute, the best matrix product of numpy (in a child process, its OpenBLAS free of the
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE overrides some machines set, its kernel named by threadpoolctl), ONNX
Runtime's own MatMul and torch; int8 compute, ONNX Runtime's MatMulInteger (u8 x s8, the kernel the int8 model
runs); memory, the best rate at which those engines stream a weight matrix of the model's size through a
matrix-vector product (each call of the model reads every weight once). The roofline at a batch size is the lower
of the compute limit and the memory limit. A figure above its limit is a bug of the limit: it is reported as such,
never as a share. Needs numpy and onnxruntime; torch where installed.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

GEMM_SIZE = 2048
OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # pin OpenBLAS to older kernels (AVX2 on an AVX-512 CPU)


def best_rate(call, work, seconds=0.3, blocks=5):
    """{rate, cv}: `work` units per second of `call` in its best of `blocks` timed blocks (a peak, after a warm-up),
    and the coefficient of variation of the blocks' rates."""
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < 0.1:
        call()
        calls += 1
    repeats = max(1, int(seconds / blocks / ((time.perf_counter() - start) / calls)))
    rates = []
    for _ in range(blocks):
        tick = time.perf_counter()
        for _ in range(repeats):
            call()
        rates.append(work * repeats / (time.perf_counter() - tick))
    rates = np.array(rates)
    return {"rate": float(rates.max()), "cv": float(rates.std(ddof=1) / rates.mean())}


# numpy in its own process: its BLAS reads OPENBLAS_* once, at import
_NUMPY_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from gan.limits import best_rate
n, sizes = int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
rng = np.random.default_rng(0)
a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
found = {"gemm": best_rate(lambda: a @ b, 2 * n**3 / 1e9), "gemv": {}}
for size in sizes:
    k = 1024
    w, x = rng.standard_normal((k, max(1, size // 4 // k)), dtype=np.float32), np.ones(k, np.float32)
    found["gemv"][str(size)] = best_rate(lambda: x @ w, w.nbytes / 1e9)
try:
    from threadpoolctl import threadpool_info
    found["blas"] = [{key: p.get(key) for key in ("internal_api", "version", "architecture", "num_threads")} for p in threadpool_info()]
except ImportError:
    found["blas"] = None
print(json.dumps(found))
"""


def numpy_rates(sizes, n=GEMM_SIZE):
    """numpy's GEMM (GFLOP/s) and GEMV (GB/s per buffer size) in a child process without the OpenBLAS overrides,
    with its BLAS as threadpoolctl names it; None with the reason where the child fails."""
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root, above gan/
    try:
        done = subprocess.run(
            [sys.executable, "-c", _NUMPY_CHILD, here, str(n), ",".join(map(str, sizes))],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        found = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as err:
        return None, f"numpy's child process failed ({type(err).__name__})"
    found["overrides_removed"] = {k: os.environ[k] for k in OVERRIDES if k in os.environ}
    return found, None


def _matmul_session(a_shape, b, kind):
    """An ONNX Runtime session of X @ B (MatMul, or MatMulInteger on u8 x s8) with B a constant."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    x_type = TensorProto.FLOAT if kind == "fp32" else TensorProto.UINT8
    op, out_type = ("MatMul", TensorProto.FLOAT) if kind == "fp32" else ("MatMulInteger", TensorProto.INT32)
    graph = helper.make_graph(
        [helper.make_node(op, ["X", "B"], ["Y"])],
        "limit",
        [helper.make_tensor_value_info("X", x_type, list(a_shape))],
        [helper.make_tensor_value_info("Y", out_type, [a_shape[0], b.shape[1]])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _onnxruntime_rates(kind, sizes, n):
    rng = np.random.default_rng(0)
    if kind == "fp32":
        b = rng.standard_normal((n, n), dtype=np.float32)
        x = rng.standard_normal((n, n), dtype=np.float32)
    else:
        b = rng.integers(-64, 65, (n, n), dtype=np.int8)
        x = rng.integers(0, 256, (n, n), dtype=np.uint8)
    session = _matmul_session(x.shape, b, kind)
    found = {"gemm": best_rate(lambda: session.run(None, {"X": x}), 2 * n**3 / 1e9), "gemv": {}}
    for size in sizes:
        k, width = 1024, 4 if kind == "fp32" else 1
        shape = (k, max(1, size // width // k))
        w = rng.standard_normal(shape, dtype=np.float32) if kind == "fp32" else rng.integers(-64, 65, shape, dtype=np.int8)
        v = np.ones((1, k), np.float32) if kind == "fp32" else np.full((1, k), 255, np.uint8)
        gemv = _matmul_session((1, k), w, kind)
        found["gemv"][str(size)] = best_rate(lambda gemv=gemv, v=v: gemv.run(None, {"X": v}), w.nbytes / 1e9)
    return found


def _torch_rates(sizes, n):
    try:
        import torch
    except ImportError:
        return None
    a, b = torch.randn(n, n), torch.randn(n, n)
    found = {"gemm": best_rate(lambda: torch.mm(a, b), 2 * n**3 / 1e9), "gemv": {}}
    for size in sizes:
        w, x = torch.randn(max(1, size // 4 // 1024), 1024), torch.ones(1024)
        found["gemv"][str(size)] = best_rate(lambda w=w, x=x: torch.mv(w, x), w.numel() * 4 / 1e9)
    return found


def measure_limits(weight_bytes, n=GEMM_SIZE):
    """{fp32, int8, bandwidth, engines, numpy_blas, numpy_note}: the best GEMM rate per precision (GFLOP/s or GOP/s,
    with the engine that reached it), the best streaming rate (GB/s) per weight size in `weight_bytes`
    ({name: bytes}), and every engine's figures. Each figure is {rate, cv}."""
    sizes = sorted(set(weight_bytes.values()))
    engines = {}
    numpy_found, numpy_note = numpy_rates(sizes, n)
    if numpy_found:
        engines["numpy"] = numpy_found
    engines["onnxruntime"] = _onnxruntime_rates("fp32", sizes, n)
    torch_found = _torch_rates(sizes, n)
    if torch_found:
        engines["torch"] = torch_found
    int8 = _onnxruntime_rates("int8", sizes, n)

    def best(figures):
        name = max(figures, key=lambda e: figures[e]["rate"])
        return dict(figures[name], engine=name)

    bandwidth = {}
    for label, size in weight_bytes.items():
        streams = {e: f["gemv"][str(size)] for e, f in engines.items()}
        streams["onnxruntime int8"] = int8["gemv"][str(size)]
        bandwidth[label] = dict(best(streams), bytes=size)
    return {
        "fp32": best({e: f["gemm"] for e, f in engines.items()}),
        "int8": dict(int8["gemm"], engine="onnxruntime MatMulInteger"),
        "bandwidth": bandwidth,
        "engines": {**engines, "onnxruntime int8": int8},
        "numpy_blas": (numpy_found or {}).get("blas"),
        "numpy_overrides_removed": (numpy_found or {}).get("overrides_removed"),
        "numpy_note": numpy_note,
        "gemm_size": n,
    }


def roofline(limits, precision, weight_label, weight_bytes, ops_per_image, batch):
    """{images_per_s, bound}: the lower of the compute limit (the precision's GEMM rate over the model's operations
    per image) and the memory limit (the stream rate for its weights, each call reading them once, x batch)."""
    compute = limits[precision]["rate"] * 1e9 / ops_per_image
    memory = limits["bandwidth"][weight_label]["rate"] * 1e9 / weight_bytes * batch
    return {"images_per_s": min(compute, memory), "bound": "compute" if compute <= memory else "memory"}


def share_of_limit(fps, limit):
    """fps / limit where it is at most 1; None (a bug of the limit, to be reported as such) where it is above."""
    share = fps / limit
    return share if share <= 1.0 else None


def describe_share(fps, limit):
    share = share_of_limit(fps, limit)
    return f"{share:.1%}" if share is not None else f"ABOVE its limit ({limit:,.0f}/s): the limit is wrong, not a share"
