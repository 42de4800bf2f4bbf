#!/usr/bin/env bash
# Offline inference with msame's flags. A .onnx model runs on ONNX Runtime (msame_onnxruntime.py, any host);
# a .om model drives the real msame, or ais_bench with --tool ais_bench (msame_driver.py, a CANN host).
#   bash run_msame.sh --model GAN.onnx --input vectors --output out --outfmt TXT | tee GAN_bs64.log
set -euo pipefail

usage() {
    echo "usage: bash run_msame.sh --model MODEL.onnx|MODEL.om --input DIR --output DIR [--outfmt TXT|BIN] [--device N[,N...]] [...]"
    echo "A .onnx model runs on ONNX Runtime (msame_onnxruntime.py), a .om model drives msame or ais_bench (msame_driver.py)."
    echo "Their flags, as this script passes them on:"
    echo
    GAN_PROG="run_msame.sh (.onnx)" "$python" "$here/msame_onnxruntime.py" --help
    echo
    GAN_PROG="run_msame.sh (.om)" "$python" "$here/msame_driver.py" --help
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

export GAN_PROG=${GAN_PROG:-run_msame.sh}  # errors are signed by the script the user ran
case "$model" in
    *.onnx) exec "$python" "$here/msame_onnxruntime.py" "$@" ;;
    *.om) exec "$python" "$here/msame_driver.py" "$@" ;;
    "") echo "$GAN_PROG: error: --model is required: a .onnx model (ONNX Runtime) or a .om model (msame) (see --help)" >&2; exit 2 ;;
    *) echo "$GAN_PROG: error: --model $model: expected a .onnx model (ONNX Runtime) or a .om model (msame) (see --help)" >&2; exit 2 ;;
esac
