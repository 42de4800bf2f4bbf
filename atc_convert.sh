#!/usr/bin/env bash
# Convert the ONNX generator to .om models with atc, one per batch size (needs a CANN host; --dry_run does not).
#   bash atc_convert.sh --onnx GAN.onnx [--batch_sizes "1 16 64"] [--soc_version Ascend310] [--precision_mode MODE]
#                       [--output_prefix GAN_bs] [--dry_run]
set -euo pipefail

usage() {
    echo "usage: bash atc_convert.sh --onnx GAN.onnx [--batch_sizes \"1 16 64\"] [--soc_version Ascend310]" >&2
    echo "                           [--precision_mode force_fp16|allow_fp32_to_fp16|must_keep_origin_dtype|allow_mix_precision]" >&2
    echo "                           [--output_prefix GAN_bs] [--dry_run]" >&2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --dry_run) dry_run=1 ;;
        -h | --help) usage; exit 0 ;;
    esac
done
[ $# -gt 0 ] || { usage; exit 2; }

if [ "$dry_run" = 0 ] && ! command -v atc >/dev/null 2>&1; then
    # The CANN toolkit puts atc on PATH only once its set_env.sh is sourced.
    looked=()
    for env_file in ${ASCEND_TOOLKIT_HOME:+"$ASCEND_TOOLKIT_HOME/set_env.sh" "$ASCEND_TOOLKIT_HOME/../set_env.sh"} \
        /usr/local/Ascend/ascend-toolkit/set_env.sh /usr/local/Ascend/ascend-toolkit/latest/set_env.sh; do
        looked+=("$env_file")
        if [ -f "$env_file" ]; then
            set +u  # set_env.sh reads variables that may be unset
            # shellcheck disable=SC1090
            source "$env_file"
            set -u
            command -v atc >/dev/null 2>&1 && break
        fi
    done
    if ! command -v atc >/dev/null 2>&1; then
        echo "atc_convert.sh: error: atc not found on PATH nor after sourcing ${looked[*]}: install the CANN toolkit" \
             "(or source its set_env.sh), or add --dry_run to print the commands" >&2
        exit 1
    fi
fi
exec "$python" "$here/atc_convert.py" "$@"
