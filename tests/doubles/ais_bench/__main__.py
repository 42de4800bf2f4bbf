"""TEST DOUBLE of `python3 -m ais_bench` (HEAD wording). Not the real tool: see tests/doubles/README.md."""
import argparse
import json
import os
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

from om_double import gears, run_om  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--model", "--om", required=True)
parser.add_argument("--input", "-i")
parser.add_argument("--output", "-o")
parser.add_argument("--outfmt", choices=["NPY", "BIN", "TXT"], default="BIN")
parser.add_argument("--loop", "-l", type=int, default=1)
parser.add_argument("--warmup_count", type=int, default=1)
parser.add_argument("--device", "-d", default="0")
parser.add_argument("--batchsize", type=int, default=None)
parser.add_argument("--dymBatch", type=int, default=None)
args = parser.parse_args()
print(f"[INFO] acl init success\n[INFO] open device {args.device} success\n[INFO] load model {args.model} success")
if args.device in os.environ.get("AIS_DOUBLE_FAIL_DEVICES", "").split(","):
    print("[ERROR] acl resource init failed")
    raise RuntimeError(f"[ERROR] device {args.device} init failed")
model_gears = gears(args.model)
if model_gears and args.dymBatch not in model_gears:
    print("[ERROR] the dymBatch parameter is not correct")
    raise RuntimeError(f"dymBatch {args.dymBatch} is not one of {model_gears}")
stamp = datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
run_dir = os.path.join(args.output, stamp)
os.makedirs(run_dir, exist_ok=True)
files = sorted(os.path.join(args.input, n) for n in os.listdir(args.input) if n.endswith((".bin", ".npy")))
times, infiles = [], {}
for sample_id, path in enumerate(files):
    batch = np.fromfile(path, dtype=np.float32).reshape(-1, 100)
    if sample_id == 0:
        for _ in range(args.warmup_count):  # untimed
            run_om(args.model, batch, args.dymBatch)
    for _ in range(args.loop):
        start = time.perf_counter()
        _, outputs = run_om(args.model, batch, args.dymBatch)
        times.append((time.perf_counter() - start) * 1000)
    stem = os.path.basename(path).split(".")[0]  # cut at the FIRST '.'
    outfiles = []
    for k, out in enumerate(outputs):
        target = os.path.join(run_dir, f"{stem}_{k}.{args.outfmt.lower()}")
        if args.outfmt == "NPY":
            np.save(target, out)
        elif args.outfmt == "TXT":
            np.savetxt(target, out.reshape(-1, out.shape[-1]), fmt="%f ", delimiter="", newline="\n")
        else:
            out.tofile(target)
        outfiles.append(target)
    infiles[sample_id] = {"infiles": [path], "outfiles": outfiles}
batchsize = args.batchsize or (np.fromfile(files[0], dtype=np.float32).size // 100 if files else 1)
stats = {"min": min(times), "max": max(times), "mean": float(np.mean(times)), "median": float(np.median(times)),
         "percentile(99%)": float(np.percentile(times, 99)), "count": len(times)}
throughput = 1000 * batchsize / stats["mean"]
print("[INFO] -----------------Performance Summary------------------")
print("[INFO] NPU_compute_time (ms): min = {min}, max = {max}, mean = {mean}, median = {median}, "
      "percentile(99%) = {percentile(99%)}".format(**stats))
print(f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean({stats['mean']}): {throughput}")
print("[INFO] ------------------------------------------------------")
with open(os.path.join(args.output, f"{stamp}_summary.json"), "w") as f:
    json.dump({"filesinfo": infiles, "args": sys.argv, "NPU_compute_time": stats, "throughput": throughput,
               "npu_compute_time_list": times, "pid": os.getpid()}, f)
