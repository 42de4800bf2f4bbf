#!/usr/bin/env bash
# The whole guide in one command on ONNX Runtime: export, test data, offline inference (TXT), JPEGs,
# precision report, image quality, throughput, report. Each step is one of the scripts the README runs by hand.
# One pipeline per workdir (a lock inside it); SIGINT, SIGTERM and SIGHUP reach the running step, which is
# waited for and recorded as interrupted: no step outlives the script.
set -euo pipefail

usage() {
    cat <<USAGE
usage: bash run_pipeline.sh [--pth X.pth] [--workdir DIR] [--iters 100] [--batch_size 64] [--seed 0] [--outfmt TXT|BIN] [--sweep]
  --pth         generator weights (default: weights/generator_mnist.pth, bundled)
  --workdir     a new or empty folder for every artefact (default: runs/<date>_<time> under the current folder)
  --iters       batches of latent vectors (default: 100)
  --batch_size  latent vectors per batch (default: 64)
  --seed        seed of the latent vectors (default: 0)
  --outfmt      offline output format, TXT or BIN in any case (default: TXT)
  --sweep       also run perf_sweep.py into <workdir>/sweep (batch sizes 1..64, about 15 s), shown in the report
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
sweep=0
die() { echo "run_pipeline.sh: error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --pth | --workdir | --iters | --batch_size | --seed | --outfmt)
            [ $# -ge 2 ] || die "$1 needs a value (see --help)"
            case "$1" in
                --pth) pth=$2 ;; --workdir) workdir=$2 ;; --iters) iters=$2 ;;
                --batch_size) batch_size=$2 ;; --seed) seed=$2 ;; --outfmt) outfmt=$2 ;;
            esac
            shift 2 ;;
        --sweep) sweep=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
# Every argument is checked before the first step runs, so a mistake never leaves a half-filled workdir.
[[ "$iters" =~ ^[0-9]+$ ]] && [ "$((10#$iters))" -gt 0 ] || die "--iters $iters: expected a positive integer"
[[ "$batch_size" =~ ^[0-9]+$ ]] && [ "$((10#$batch_size))" -gt 0 ] || die "--batch_size $batch_size: expected a positive integer"
# GAN_testdata.py's limit (gan_io.JPEG_MAX_SIDE): taller grids do not fit a JPEG
[ "$((10#$batch_size))" -le 17464 ] || die "--batch_size $batch_size: a grid of more than 17464 images is taller than JPEG allows"
[[ "$seed" =~ ^[0-9]+$ ]] || die "--seed $seed: expected an integer >= 0"
outfmt=${outfmt^^}
[[ "$outfmt" == TXT || "$outfmt" == BIN ]] || die "--outfmt $outfmt: expected TXT or BIN"
[ -f "$pth" ] || die "$pth: no such checkpoint (pass --pth FILE)"
workdir=${workdir:-runs/$(date +%Y%m%d_%H%M%S)}
if ! reason=$(mkdir -p -- "$workdir" 2>&1); then
    die "$workdir: cannot create the work folder (${reason##*: })"
fi
[ -d "$workdir" ] || die "$workdir: exists and is not a folder: pass --workdir with a new or empty folder"
# One pipeline per workdir: the lock is taken before the emptiness check, so two pipelines started together
# into one empty folder cannot both pass it. It is held (fd 9, inherited by the steps) until the last step ends.
lock=$workdir/.pipeline.lock
{ exec 9>>"$lock"; } 2>/dev/null || die "$lock: cannot create the workdir's lock file"
flock -n 9 || die "$workdir: another run_pipeline.sh is writing into it (it holds $lock): wait for it, or pass another --workdir"
if [ -n "$(ls -A "$workdir" | grep -vx '\.pipeline\.lock' || true)" ]; then
    die "$workdir is not an empty folder: pass --workdir with a new or empty folder"
fi

log=$workdir/GAN_bs$batch_size.log
steps=$workdir/steps.tsv  # what GAN_report.py shows under "what was run"
printf 'step\tstatus\tseconds\tpeak_mb\tcommand\n' > "$steps"
timings=()
now_us() { echo "${EPOCHREALTIME/[.,]/}"; }  # bash 5: microseconds, no external tool
seconds_since() { local us=$(($(now_us) - $1)); printf '%d.%02d' $((us / 1000000)) $((us % 1000000 / 10000)); }
memory_file=$(mktemp)
trap 'rm -f "$memory_file"' EXIT
shown=""
step_pid=""
step_name=""
step_command=""
step_start=""

record() {  # record STATUS PEAK: one line of steps.tsv for the current step
    printf '%s\t%s\t%s\t%s\t%s\n' "$step_name" "$1" "$(seconds_since "$step_start")" "$2" "$step_command" >> "$steps"
}

on_signal() {  # on_signal NAME NUMBER: pass the signal to the running step, wait for all of it, record, exit 128+N
    trap '' INT TERM HUP
    if [ -n "$step_pid" ]; then
        kill -s "$1" -- "-$step_pid" 2>/dev/null || true
        while kill -0 -- "-$step_pid" 2>/dev/null; do sleep 0.05; done  # every process of the step, not only the first
        wait "$step_pid" 2>/dev/null || true
        record "interrupted (SIG$1)" "-"
        # the step itself printed the one line (signed "run_pipeline.sh (<step>)")
    else
        echo "run_pipeline.sh: error: interrupted by SIG$1 between steps; the workdir $workdir holds the steps done so far" >&2
    fi
    exit $((128 + $2))
}
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

step() {  # step NAME COMMAND...: run one step in its own process group, time it (and its peak memory), stop if it fails
    local peak="-" status=0 seconds
    step_name=$1
    shift
    step_command=${shown:-$(printf '%q ' "$@")}  # quoted: the line can be pasted back into a shell
    shown=""
    echo "== $step_name: $step_command"
    step_start=$(now_us)
    # errors of the step are signed by this script and name the step; setsid: a process group of its own, which
    # the signal handler above reaches as a whole
    if [ -x /usr/bin/time ]; then
        GAN_PROG="run_pipeline.sh ($step_name)" setsid /usr/bin/time -f %M -o "$memory_file" "$@" &
    else
        GAN_PROG="run_pipeline.sh ($step_name)" setsid "$@" &
    fi
    step_pid=$!
    wait "$step_pid" || status=$?
    step_pid=""
    if [ -x /usr/bin/time ] && [ -s "$memory_file" ]; then
        peak=$(($(tail -n 1 "$memory_file") / 1024))
    fi
    if [ "$status" -ne 0 ]; then
        record "failed (exit $status)" "$peak"
        exit "$status"  # the step printed its one line
    fi
    seconds=$(seconds_since "$step_start")
    record ok "$peak"
    [ "$peak" = "-" ] || peak="$peak MB"
    timings+=("$(printf '%-10s %7s s  %8s' "$step_name" "$seconds" "$peak")")
}

echo "== workdir: $workdir"
total_start=$(now_us)
step export "$python" "$here/GAN_pth2onnx.py" --input_file="$pth" --output_file="$workdir/GAN.onnx" --save_json "$workdir/export.json"
step testdata "$python" "$here/GAN_testdata.py" --online_path="$workdir/images" --offline_path="$workdir/vectors" \
    --pth_path="$pth" --iters "$iters" --batch_size "$batch_size" --seed "$seed" --save_json "$workdir/testdata.json"
# The runner's log is kept for the throughput step, as the guide keeps msame's in GAN_bs64.log.
shown=$(printf '%q ' bash "$here/run_msame.sh" --model "$workdir/GAN.onnx" --input "$workdir/vectors" --output "$workdir/out" \
    --outfmt "$outfmt")"> $(printf '%q' "$log")"
step offline bash -c 'bash "$0" --model "$1" --input "$2" --output "$3" --outfmt "$4" > "$5"' \
    "$here/run_msame.sh" "$workdir/GAN.onnx" "$workdir/vectors" "$workdir/out" "$outfmt" "$log"
grep -v '^Inference time:' "$log"
step txt2jpg "$python" "$here/GAN_txt2jpg.py" --txt_path="$workdir/out" --infer_results_path="$workdir/genimg"
step compare "$python" "$here/GAN_compare.py" --online_path="$workdir/images" --offline_path="$workdir/out" \
    --diff_image "$workdir/compare_first_batch.png" --quiet --save_json "$workdir/compare.json"
step eval "$python" "$here/GAN_eval.py" --images_path "$workdir/images" --images_path "$workdir/out" --save_json "$workdir/eval.json"
step perf "$python" "$here/perf_calc.py" --log "$log" --save_json "$workdir/perf.json"
if [ "$sweep" = 1 ]; then
    step sweep "$python" "$here/perf_sweep.py" --model "$workdir/GAN.onnx" --output "$workdir/sweep"
fi
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
  *.json, steps.tsv         each step's figures, and what ran (read by the report)$([ "$sweep" = 1 ] && printf '\n  sweep/                    the batch sweep: sweep.json, sweep.md, sweep.png')
  report.html, report.md    one page with all of it
== time per step (and peak memory)
DONE
printf '  %s\n' "${timings[@]}"
printf '  %-10s %7s s\n' total "$total"
echo "== report: $workdir/report.html"
echo "== report: $workdir/report.md"
