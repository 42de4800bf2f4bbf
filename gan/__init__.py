"""The shared modules of the pipeline's steps, each named for what it holds; nothing here imports a step or a tool.

cli          errors, signals, arguments, memory checks (the standard library only)
files        safe writes, tensor files, text decoding, image grids (numpy and Pillow)
txt          msame's TXT numbers read at once (numpy)
onnx_models  ONNX model files, their external data, sessions and signatures
runs         run folders and their contract (manifests, completeness, the newest run)
records      every record file's shape, read and written through one checker
perf         latency statistics, the CPU, the machine's load, the chip rule, the guide's figures
limits       this machine's limits (GEMM, int8 GEMM, memory) and the roofline
"""
