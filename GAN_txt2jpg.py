"""Turn offline outputs (msame or ais_bench, TXT, BIN or NPY) into JPEG grids like the online ones.

    python GAN_txt2jpg.py --txt_path=out --infer_results_path=genimg

--txt_path is msame's output root (the newest run folder under it is used, newest by modification time:
msame's folder names do not sort as text) or a folder that holds the output files itself. Output
<i>_output_0.txt (msame) or <i>_0.bin (ais_bench) becomes genimg/<i>.jpg; the batch index is the whole
leading number of the name. Needs numpy and Pillow only.
"""
import argparse
import time

from gan_io import ensure_dir, find_run_folder, list_output_files, progress, read_output, run_main, save_grid


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--txt_path", default="out", help="offline output root, or the run folder itself")
    parser.add_argument("--infer_results_path", default="genimg", help="folder for the <i>.jpg grids")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(args):
    started = time.perf_counter()
    run_dir = find_run_folder(args.txt_path)
    outputs = list_output_files(run_dir)
    results_dir = ensure_dir(args.infer_results_path, "results folder")
    for index in progress(sorted(outputs), args.quiet, desc="txt2jpg"):
        save_grid(read_output(outputs[index]), results_dir / f"{index}.jpg")
    print(f"wrote {len(outputs)} grids from {run_dir} to {results_dir}/ ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    run_main(main, get_args_parser())
