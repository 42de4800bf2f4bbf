#!/usr/bin/env bash
# The whole guide in one command on ONNX Runtime: export, test data, offline inference (TXT), JPEGs,
# precision report, image quality, throughput, report. The logic is in run_pipeline.py (argument checks, the
# workdir's lock, each step a child that dies with the pipeline, signals passed on); `--help` lists the flags.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "${PYTHON:-python3}" "$here/run_pipeline.py" "$@"
