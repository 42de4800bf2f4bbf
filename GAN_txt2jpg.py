"""Turn offline outputs (msame or ais_bench, TXT, BIN or NPY) into JPEG grids like the online ones.

    python GAN_txt2jpg.py --txt_path=out --infer_results_path=genimg

--txt_path is msame's output root (the newest run is used, and refused if this project wrote it and it is
not complete; gan/runs.py) or a run folder itself. Output <i>_output_0.txt (msame) or <i>_0.bin
(ais_bench) becomes genimg/<i>.jpg; the batch index is the whole leading number of the name. A results
folder that holds grids of other batches (an earlier, larger run) is refused, as GAN_testdata.py refuses
stale batches. Needs numpy and Pillow only.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import time

from gan.cli import HelpFormatter, InputError, ensure_dir, progress, refuse_overlap, run_main, short_list
from gan.files import numbered_files, read_output, save_grid
from gan.runs import open_run


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--txt_path", default="out", help="offline output root, or the run folder itself")
    parser.add_argument("--infer_results_path", default="genimg", help="folder for the <i>.jpg grids")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(args):
    started = time.perf_counter()
    run = open_run(args.txt_path)
    refuse_overlap([("--txt_path", args.txt_path), ("the run folder", run.path)], [("--infer_results_path", args.infer_results_path)])
    if numbered_files(args.infer_results_path, ".bin"):
        raise InputError(
            f"{args.infer_results_path}: holds <i>.bin files, like GAN_testdata.py's online folder: offline grids "
            f"there would replace its <i>.jpg; choose another folder"
        )
    stale = sorted(set(numbered_files(args.infer_results_path, ".jpg")) - set(run.outputs))
    if stale:
        raise InputError(
            f"{args.infer_results_path}: holds grids {short_list(stale)} that are not batches of this run "
            f"({len(run.outputs)} outputs): use an empty folder or remove them"
        )
    results_dir = ensure_dir(args.infer_results_path, "results folder")
    print(f"reading {run.note}")
    for index in progress(sorted(run.outputs), args.quiet, desc="txt2jpg"):
        save_grid(read_output(run.outputs[index]), results_dir / f"{index}.jpg")
    print(f"wrote {len(run.outputs)} grids from {run.path} to {results_dir}/ ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    run_main(main, get_args_parser())
