#!/usr/bin/env bash
# Convert the ONNX generator to .om models with atc, one per batch size (needs a CANN host; --dry_run does not).
#   bash atc_convert.sh --onnx GAN.onnx [--batch_sizes "1 16 64"] [--soc_version Ascend310] [--precision_mode MODE] [--dry_run]
#   bash atc_convert.sh --onnx GAN.onnx --dynamic_batch_size "1,4,8,16,32,64" [--dynamic_output GAN_dyn]
# (bash atc_convert.sh --help lists every flag)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
export GAN_PROG=${GAN_PROG:-atc_convert.sh}  # errors and --help are signed by the script the user ran
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --dry_run) dry_run=1 ;;
        -h | --help) exec "$python" "$here/atc_convert.py" --help ;;  # every flag, from the one parser
    esac
done
[ $# -gt 0 ] || exec "$python" "$here/atc_convert.py"  # argparse's usage line and "--onnx is required"

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
        echo "$GAN_PROG: error: atc not found on PATH nor after sourcing ${looked[*]}: install the CANN toolkit" \
             "(or source its set_env.sh), or add --dry_run to print the commands" >&2
        exit 1
    fi
fi
exec "$python" "$here/atc_convert.py" "$@"
