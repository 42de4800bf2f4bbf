"""Make the test data: latent vectors for the offline step and the online (PyTorch) results for the same vectors.

    python GAN_testdata.py --online_path=images --offline_path=vectors --pth_path=weights/generator_mnist.pth --iters 100 --batch_size 64

For each batch i: vectors/<i>.bin (float32 (batch, 100), N(0, 1)), images/<i>.bin (the raw online output,
float32 (batch, 1, 28, 28)) and images/<i>.jpg (its grid, laid out as torchvision's save_image(normalize=True)).
The same --seed gives byte-identical .bin files; batch i is drawn from its own seeded stream, so any
batch can be regenerated alone. Files are written one batch at a time, each under a temporary name first.
Refused before anything is written: the two folders being one, a folder holding batches of an earlier,
larger run, and a JPEG grid taller than JPEG allows. A batch whose outputs hold NaN or Inf is refused
before any of its files is written.
"""

from gan.cli import exit_on_signal_until_ready

exit_on_signal_until_ready(__name__)  # before the slow imports below


import argparse
import time
from pathlib import Path

from gan.cli import (
    HelpFormatter,
    InputError,
    check_memory,
    check_output_file,
    ensure_dir,
    non_negative_int,
    positive_int,
    progress,
    refuse_overlap,
    require_modules,
    run_main,
    short_list,
)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--online_path", default="images", help="folder for the online results <i>.bin and <i>.jpg")
    parser.add_argument("--offline_path", default="vectors", help="folder for the latent vectors <i>.bin")
    parser.add_argument("--pth_path", required=True, help="generator checkpoint (.pth)")
    parser.add_argument("--iters", type=positive_int, default=1, help="number of batches")
    parser.add_argument("--batch_size", type=positive_int, default=1, help="latent vectors per batch")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent vectors (>= 0)")
    parser.add_argument("--no_jpg", action="store_true", help="skip the online JPEG grids (raw outputs only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--save_json", default=None, help="also save how the data was made (seed, sizes, weights) as JSON here")
    return parser


require_modules(__name__, get_args_parser, "torch")  # before the imports that need them: --help works without

import torch

from gan.files import IMG_SIZE, LATENT_DIM, check_finite, check_grid_fits, latent_batch, numbered_files, save_grid, write_bin
from gan.records import save_step
from models import load_generator

# float32 values held per latent vector at the peak of a forward pass (input, widest layers, output, its copy)
VALUES_PER_IMAGE_AT_PEAK = LATENT_DIM + 2 * 1024 + 3 * IMG_SIZE


def main(args):
    check_memory(
        args.batch_size * VALUES_PER_IMAGE_AT_PEAK * 4,
        f"--batch_size {args.batch_size}: one batch",
        "use smaller batches (and more --iters)",
    )
    if args.save_json:
        check_output_file(args.save_json, "--save_json")
    refuse_overlap(
        [("--pth_path", args.pth_path)],
        [("--online_path", args.online_path), ("--offline_path", args.offline_path), ("--save_json", args.save_json)],
    )
    if not args.no_jpg:
        check_grid_fits(args.batch_size, Path(args.online_path) / "0.jpg")
    for folder in (args.online_path, args.offline_path):
        # Batches left from a larger earlier run would be run offline and compared as if they were this run's.
        stale = sorted(i for i in numbered_files(folder, ".bin") if i >= args.iters)
        if stale:
            raise InputError(
                f"{folder}: holds batches {short_list(stale)} of an earlier run beyond --iters "
                f"{args.iters}: use an empty folder or remove them"
            )
    generator = load_generator(args.pth_path)
    online_dir = ensure_dir(args.online_path, "online folder")
    offline_dir = ensure_dir(args.offline_path, "offline folder")
    started = time.perf_counter()
    for i in progress(range(args.iters), args.quiet, desc="test data"):
        z = latent_batch(args.seed, i, args.batch_size)
        with torch.inference_mode():
            images = check_finite(generator(torch.from_numpy(z)).numpy(), args.pth_path, f"outputs of batch {i}")
        write_bin(offline_dir / f"{i}.bin", z)
        write_bin(online_dir / f"{i}.bin", images)
        if not args.no_jpg:
            save_grid(images, online_dir / f"{i}.jpg")
    if args.save_json:
        save_step(
            args.save_json,
            "testdata",
            {
                "pth_path": str(args.pth_path),
                "seed": args.seed,
                "iters": args.iters,
                "batch_size": args.batch_size,
                "online_path": str(online_dir),
                "offline_path": str(offline_dir),
                "jpg": not args.no_jpg,
            },
        )
    print(
        f"wrote {args.iters} batches of {args.batch_size}: latents in {offline_dir}/, online outputs (.bin"
        f"{'' if args.no_jpg else ', .jpg'}) in {online_dir}/ ({time.perf_counter() - started:.1f} s)"
    )


if __name__ == "__main__":
    run_main(main, get_args_parser())
