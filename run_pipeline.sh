#!/usr/bin/env bash
# The whole guide in one command on ONNX Runtime: export, test data, offline inference (TXT), JPEGs,
# precision report, throughput. Each step is one of the scripts the README runs by hand.
set -euo pipefail

usage() {
    cat >&2 <<USAGE
usage: bash run_pipeline.sh [--pth X.pth] [--workdir DIR] [--iters 100] [--batch_size 64] [--seed 0] [--outfmt TXT|BIN]
  --pth         generator weights (default: weights/generator_mnist.pth, bundled)
  --workdir     a new or empty folder for every artefact (default: runs/<date>_<time>)
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
pth=$here/weights/generator_mnist.pth
workdir=""
iters=100
batch_size=64
seed=0
outfmt=TXT
while [ $# -gt 0 ]; do
    case "$1" in
        --pth) pth=${2:?--pth needs a file}; shift 2 ;;
        --workdir) workdir=${2:?--workdir needs a folder}; shift 2 ;;
        --iters) iters=${2:?--iters needs a number}; shift 2 ;;
        --batch_size) batch_size=${2:?--batch_size needs a number}; shift 2 ;;
        --seed) seed=${2:?--seed needs a number}; shift 2 ;;
        --outfmt) outfmt=${2:?--outfmt needs TXT or BIN}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run_pipeline.sh: error: unknown argument $1" >&2; usage; exit 2 ;;
    esac
done
# Every argument is checked before the first step runs, so a mistake never leaves a half-filled workdir.
die() { echo "run_pipeline.sh: error: $*" >&2; exit 2; }
[[ "$iters" =~ ^[0-9]+$ ]] && [ "$((10#$iters))" -gt 0 ] || die "--iters $iters: expected a positive integer"
[[ "$batch_size" =~ ^[0-9]+$ ]] && [ "$((10#$batch_size))" -gt 0 ] || die "--batch_size $batch_size: expected a positive integer"
# GAN_testdata.py's limit (gan_io.JPEG_MAX_SIDE): taller grids do not fit a JPEG
[ "$((10#$batch_size))" -le 17464 ] || die "--batch_size $batch_size: a grid of more than 17464 images is taller than JPEG allows"
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed $seed: expected an integer >= 0"
outfmt=${outfmt^^}
[[ "$outfmt" == TXT || "$outfmt" == BIN ]] || die "--outfmt $outfmt: expected TXT or BIN"
[ -f "$pth" ] || die "$pth: no such checkpoint (pass --pth FILE)"
workdir=${workdir:-runs/$(date +%Y%m%d_%H%M%S)}
if [ -e "$workdir" ] && { [ ! -d "$workdir" ] || [ -n "$(ls -A "$workdir")" ]; }; then
    die "$workdir is not an empty folder: pass --workdir with a new or empty folder"
fi
mkdir -p "$workdir" || die "$workdir: cannot create the work folder"

log=$workdir/GAN_bs$batch_size.log
steps=$workdir/steps.tsv  # what GAN_report.py shows under "what was run"
printf 'step\tseconds\tpeak_mb\tcommand\n' > "$steps"
timings=()
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }  # bash 5: microseconds, no external tool
seconds_since() { local us=$(($(now_us) - $1)); printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000)); }
memory_file=$(mktemp)
trap 'rm -f "$memory_file"' EXIT
shown=""
step() {  # step NAME COMMAND...: run one step, time it (and its peak memory, where GNU time exists), stop if it fails
    local name=$1 start peak="-" seconds command
    shift
    command=${shown:-$(printf '%q ' "$@")}  # quoted: the line can be pasted back into a shell
    shown=""
    echo "== $name: $command"
    start=$(now_us)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M -o "$memory_file" "$@"
        peak=$(($(tail -n 1 "$memory_file") / 1024))
    else
        "$@"
    fi
    seconds=$(seconds_since "$start")
    printf '%s\t%s\t%s\t%s\n' "$name" "$seconds" "$peak" "$command" >> "$steps"
    [ "$peak" = "-" ] || peak="$peak MB"
    timings+=("$(printf '%-10s %7s s  %8s' "$name" "$seconds" "$peak")")
}

total_start=$(now_us)
step export "$python" "$here/GAN_pth2onnx.py" --input_file="$pth" --output_file="$workdir/GAN.onnx" --save_json "$workdir/export.json"
step testdata "$python" "$here/GAN_testdata.py" --online_path="$workdir/images" --offline_path="$workdir/vectors" \
    --pth_path="$pth" --iters "$iters" --batch_size "$batch_size" --seed "$seed" --quiet --save_json "$workdir/testdata.json"
# The runner's log is kept for the throughput step, as the guide keeps msame's in GAN_bs64.log.
shown=$(printf '%q ' bash "$here/run_msame.sh" --model "$workdir/GAN.onnx" --input "$workdir/vectors" --output "$workdir/out" \
    --outfmt "$outfmt")"> $(printf '%q' "$log")"
step offline bash -c 'bash "$0" --model "$1" --input "$2" --output "$3" --outfmt "$4" > "$5"' \
    "$here/run_msame.sh" "$workdir/GAN.onnx" "$workdir/vectors" "$workdir/out" "$outfmt" "$log"
grep -v '^Inference time:' "$log"
step txt2jpg "$python" "$here/GAN_txt2jpg.py" --txt_path="$workdir/out" --infer_results_path="$workdir/genimg" --quiet
step compare "$python" "$here/GAN_compare.py" --online_path="$workdir/images" --offline_path="$workdir/out" \
    --diff_image "$workdir/compare_first_batch.png" --quiet --save_json "$workdir/compare.json"
step eval "$python" "$here/GAN_eval.py" --images_path "$workdir/images" --images_path "$workdir/out" --save_json "$workdir/eval.json"
step perf "$python" "$here/perf_calc.py" --log "$log" --save_json "$workdir/perf.json"
step report "$python" "$here/GAN_report.py" --workdir "$workdir"
total=$(seconds_since "$total_start")

cat <<DONE

== artefacts in $workdir
  GAN.onnx                  the exported generator
  vectors/<i>.bin           latent vectors ($iters x $batch_size x 100 float32)
  images/<i>.bin, <i>.jpg   online PyTorch outputs and their grids
  out/<run>/                offline outputs ($outfmt), $log the runner's log
  genimg/<i>.jpg            offline grids
  compare_first_batch.png   online | offline | magnified difference, first batch
  *.json, steps.tsv         each step's figures, and what ran (read by the report)
  report.html, report.md    one page with all of it
== time per step (and peak memory)
DONE
printf '  %s\n' "${timings[@]}"
printf '  %-10s %7s s\n' total "$total"
echo "== report: $workdir/report.html"
echo "== report: $workdir/report.md"
