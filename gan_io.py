"""What several pipeline steps share: tensor files, msame's TXT format, run folders, image grids, errors.

This module imports only numpy and Pillow, so the offline half of the pipeline (the ONNX Runtime runner, the
driver of msame and ais_bench, GAN_txt2jpg.py, GAN_compare.py, GAN_eval.py, perf_calc.py) runs on an inference
host that has no torch.
"""
import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

LATENT_DIM = 100
IMG_SHAPE = (1, 28, 28)
IMG_SIZE = int(np.prod(IMG_SHAPE))  # 784 values per generated image


class InputError(Exception):
    """A problem the user can fix (missing file, wrong size, wrong format). Printed as one line, no traceback."""


def run_main(main, parser, argv=None, pass_unknown=False):
    """Run a step's main(args); a user error ends as one line on stderr and a non-zero exit, no traceback.

    Bad flags exit 2 (argparse's convention), bad files exit 1. With pass_unknown, flags the parser does
    not know are kept in args.unknown (for a driver that hands them to the tool it runs).
    """
    def one_line_error(message):
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = one_line_error
    if pass_unknown:
        args, args.unknown = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    try:
        return main(args)
    except InputError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(1)


def positive_int(text):
    """argparse type for counts such as --iters and --batch_size: 0 or negative is refused at parse time."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# ---------------------------------------------------------------------------------------------------------
# Writing files so that an interrupted run never leaves a half-written file behind.

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def ensure_dir(path, what="output folder"):
    """Create a folder (with parents) and check that we can write into it; one clear error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create {what} {path}: {err.strerror}") from None
    if not path.is_dir():
        raise InputError(f"{what} {path} exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path} is not writable")
    return path


def latent_batch(seed, index, batch_size):
    """Batch `index` of the latent vectors: N(0, 1) float32 from its own seeded stream, so batches are independent."""
    rng = np.random.default_rng([seed, index])
    return rng.standard_normal((batch_size, LATENT_DIM), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# Raw float32 tensors (.bin), as GAN_testdata.py writes them and msame reads and writes them.

def count_rows(path, row_size, what="float32 file"):
    """Rows of `row_size` float32 in a raw file, from its size; refuse a size that is not a whole number of rows."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"{path}: cannot read {what}: {err.strerror}") from None
    row_bytes = row_size * 4
    if size == 0 or size % row_bytes:
        raise InputError(f"{path}: {size} bytes is not a whole number of rows of {row_size} float32 ({row_bytes} bytes each)")
    return size // row_bytes


def read_bin(path, row_size, what="float32 file"):
    """Read a raw float32 file as (rows, row_size); refuse a size that is not a whole number of rows."""
    count_rows(path, row_size, what)
    return np.fromfile(path, dtype=np.float32).reshape(-1, row_size)


def write_bin(path, array):
    array = np.ascontiguousarray(array, dtype=np.float32)
    write_bytes_atomic(path, array.tobytes())


# ---------------------------------------------------------------------------------------------------------
# msame's interface: input folders, device lists, run folders (shared by the ONNX Runtime runner and the
# driver of the real tools).

def parse_devices(text):
    try:
        devices = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device id or a comma-separated list such as 0,1,2,3, got {text!r}") from None
    if any(not 0 <= d <= 255 for d in devices) or len(set(devices)) != len(devices):
        raise argparse.ArgumentTypeError(f"expected distinct device ids in 0..255, got {text!r}")
    return devices


def check_input(path, features, fixed_batch):
    """Rows in an input file, refusing a size that is not a whole number of rows (or not the model's batch)."""
    rows = count_rows(path, features, "input file")
    if fixed_batch is not None and rows != fixed_batch:
        raise InputError(f"{path}: {rows} rows, but the model takes batches of exactly {fixed_batch}")
    return rows


def list_inputs(input_path):
    """msame's folder mode: the non-hidden entries of the folder, sorted by name."""
    folder = Path(input_path)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such input folder")
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: the input folder is empty (expected <i>.bin files from GAN_testdata.py)")
    not_files = [p.name for p in files if not p.is_file()]
    if not_files:
        raise InputError(f"{folder}: expected only input files, found folder {not_files[0]}")
    return files


def new_run_folder(output_root):
    """A new folder <output>/<YYYYmmdd_HHMMSS_microseconds>: names sort by time, an existing one is never reused."""
    root = ensure_dir(output_root, "output folder")
    while True:
        run_dir = root / datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            time.sleep(1e-6)
        except OSError as err:
            raise InputError(f"cannot create run folder {run_dir}: {err.strerror}") from None


# ---------------------------------------------------------------------------------------------------------
# msame's TXT output: every value as C++ ostream prints it (6 significant digits, like %g), a space after
# every value, a newline after every innermost row.

_txt_templates = {}


def format_msame_txt(array):
    """Text of `array` exactly as msame's TXT output writes it."""
    array = np.asarray(array, dtype=np.float32)
    row = array.shape[-1] if array.ndim > 1 else array.size
    rows = array.size // row if row else 0
    key = (row, rows, array.ndim > 1)
    template = _txt_templates.get(key)
    if template is None:
        # One '%' over a whole-batch template is about twice as fast as np.savetxt's per-row formatting.
        line = "%g " * row + ("\n" if array.ndim > 1 else "")
        template = _txt_templates[key] = line * rows
    return template % tuple(array.ravel().tolist())


def parse_txt(path, expected_count=None):
    """Read a whitespace-separated TXT output (msame's or ais_bench's) as a flat float32 array."""
    path = Path(path)
    try:
        # numpy's C parser; it needs the same count of values on every line, which msame's and ais_bench's
        # current formats have. Anything else (msame before 2021-07: 100 values a line) takes the token path.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            values = np.loadtxt(path, dtype=np.float32, ndmin=1).ravel()
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    except ValueError:
        values = _parse_tokens(path)
    if expected_count is not None and (values.size == 0 or values.size % expected_count):
        raise InputError(f"{path}: {values.size} values is not a whole number of outputs of {expected_count} values")
    return values


def _parse_tokens(path):
    tokens = path.read_bytes().split()
    try:
        return np.array(tokens, dtype=np.float32)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise InputError(f"{path}: expected numbers, found {bad[:20].decode(errors='replace')!r}") from None


def _is_number(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------
# Output folders of msame, ais_bench and our ONNX Runtime runner.

# <i>_output_0.txt (msame folder mode) or <i>_0.bin (ais_bench): the batch index is the whole leading number.
OUTPUT_NAME = re.compile(r"^(\d+)(?:_output)?_0\.(txt|bin|npy)$")


def list_output_files(folder):
    """{batch index: path} of the output files of model output 0 in `folder`."""
    found = {}
    for path in Path(folder).iterdir():
        match = OUTPUT_NAME.match(path.name)
        if match and path.is_file():
            index = int(match.group(1))
            if index in found:
                raise InputError(f"{folder}: batch {index} has two output files: {found[index].name} and {path.name}")
            found[index] = path
    return found


def find_run_folder(path):
    """The folder that holds the output files: `path` itself, or the newest run folder under it.

    Newest by modification time: msame's current folder names (`2021926_8_7_6_12345`) are unpadded and do
    not sort as text.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such output folder")
    if list_output_files(path):
        return path
    runs = [p for p in path.iterdir() if p.is_dir() and list_output_files(p)]
    if not runs:
        raise InputError(f"{path}: no output files (<i>_output_0.txt|bin or <i>_0.txt|bin|npy) in it or in a run folder under it")
    return max(runs, key=lambda p: (p.stat().st_mtime_ns, p.name))


def read_output(path, image_size=IMG_SIZE):
    """One offline output file (TXT, BIN or NPY) as float32 (batch, 1, 28, 28)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        values = parse_txt(path, image_size)
    elif suffix == ".npy":
        try:
            values = np.load(path, allow_pickle=False).astype(np.float32, copy=False).ravel()
        except (OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable .npy file: {err}") from None
        if values.size == 0 or values.size % image_size:
            raise InputError(f"{path}: {values.size} values is not a whole number of images of {image_size} values")
    else:
        values = read_bin(path, image_size, "model output")
    return values.reshape(-1, *IMG_SHAPE)


# ---------------------------------------------------------------------------------------------------------
# Image grids laid out as torchvision's make_grid / save_image(normalize=True) lays them out.

def grid_array(images, nrow=8, padding=2, pad_value=0.0, value_range=None):
    """uint8 (H, W, 3) picture of `images` (N, 1, h, w): the pixels torchvision's save_image(normalize=True) writes.

    torchvision rescales the whole batch by its min and max (or by `value_range`), tiles nrow images per
    row with `padding` pixels around each, returns a single image unpadded, and rounds with x*255 + 0.5
    then truncates.
    """
    images = np.asarray(images, dtype=np.float32)
    low, high = value_range or (float(images.min()), float(images.max()))
    scaled = (np.clip(images, np.float32(low), np.float32(high)) - np.float32(low)) / np.float32(max(high - low, 1e-5))
    count, _, h, w = scaled.shape
    if count == 1:
        grid = scaled[0, 0]
    else:
        cols = min(nrow, count)
        rows = -(-count // cols)
        grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value, np.float32)
        for k in range(count):
            y, x = divmod(k, cols)
            top, left = y * (h + padding) + padding, x * (w + padding) + padding
            grid[top:top + h, left:left + w] = scaled[k, 0]
    pixels = np.clip(grid * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2)


def save_grid(images, path):
    """Save `images` as one grid picture (format from the extension), atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid_array(images)).save(tmp, format=_image_format(path))


def _image_format(path):
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(path).suffix.lower(), "PNG")


def progress(iterable, quiet=False, **kwargs):
    """A tqdm progress bar on a terminal, nothing in logs or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def numbered_files(folder, suffix):
    """{i: path} for the files <i><suffix> in `folder` (the online images/<i>.bin, the vectors/<i>.bin)."""
    found = {}
    for path in Path(folder).glob(f"*{suffix}"):
        stem = path.name[: -len(suffix)]
        if stem.isdigit():
            found[int(stem)] = path
    return found
