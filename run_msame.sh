#!/usr/bin/env bash
# Offline inference with msame's flags. A .onnx model runs on ONNX Runtime (msame_onnxruntime.py, any host);
# a .om model drives the real msame, or ais_bench with --tool ais_bench (msame_driver.py, a CANN host).
#   bash run_msame.sh --model GAN.onnx --input vectors --output out --outfmt TXT | tee GAN_bs64.log
set -euo pipefail

usage() {
    echo "usage: bash run_msame.sh --model MODEL.onnx|MODEL.om --input DIR --output DIR [--outfmt TXT|BIN] [--device N[,N...]] [...]" >&2
    echo "       (python3 msame_onnxruntime.py --help and python3 msame_driver.py --help list every flag)" >&2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
model=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --model=*) model=${args[i]#--model=} ;;
        --model) model=${args[i + 1]:-} ;;
        -h | --help) usage; exit 0 ;;
    esac
done

case "$model" in
    *.onnx) exec "$python" "$here/msame_onnxruntime.py" "$@" ;;
    *.om) exec "$python" "$here/msame_driver.py" "$@" ;;
    "") usage; exit 2 ;;
    *) echo "run_msame.sh: error: --model $model: expected a .onnx model (ONNX Runtime) or a .om model (msame)" >&2; exit 2 ;;
esac
