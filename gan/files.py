"""What several pipeline steps read and write: safe writes, tensor files, msame's TXT format, image grids, ONNX sessions.

This module imports only numpy and Pillow, so the offline half of
the pipeline (the ONNX Runtime runner, the driver of msame and ais_bench, GAN_txt2jpg.py, GAN_compare.py,
GAN_eval.py, perf_calc.py) runs on an inference host that has no torch.
"""

import contextlib
import errno
import io
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np

from gan.cli import InputError, pid_alive, refuse_special_output, signals_deferred
from gan.txt import parse_g_values

LATENT_DIM = 100
IMG_SHAPE = (1, 28, 28)
IMG_SIZE = int(np.prod(IMG_SHAPE))  # 784 values per generated image


# ---------------------------------------------------------------------------------------------------------
# Writing files so that an interrupted run never leaves a half-written file behind.

_UMASK = os.umask(0)
os.umask(_UMASK)
# Temporary files are named .<name>.<pid>.<random>.part: a hidden name that no reader takes for a result,
# and the pid tells a later writer whether the process that made it is gone (killed with SIGKILL).
_PART_NAME = re.compile(r"^\..*\.(\d+)\.[A-Za-z0-9_]{8}\.part$")
_swept = set()


def _sweep_stale_parts(folder):
    """Remove the .part files that dead processes left in `folder` (once per folder and process)."""
    key = os.path.realpath(folder)
    if key in _swept:
        return
    _swept.add(key)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _PART_NAME.match(entry.name)
            if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def stale_part(name):
    """Whether `name` is a temporary file of a writer that is gone (killed with SIGKILL): no reader takes it for a result."""
    match = _PART_NAME.match(name)
    return bool(match) and not pid_alive(int(match.group(1)))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds.

    On any error, SIGINT or SIGTERM the temporary file is removed. An OSError while writing (a full disk,
    a folder that is not writable) is reported against `path`, the file the user asked for.
    """
    path = Path(path)
    refuse_special_output(path)
    folder = path.parent
    _sweep_stale_parts(folder)
    tmp = None
    try:
        with signals_deferred():  # a signal between creating the file and knowing its name would leak it
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=folder)
            os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise InputError(f"{path}: cannot write: {err.strerror or one_line_reason(err)}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path):
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def write_bytes_atomic(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def open_regular(path, what="file", max_bytes=None, follow_links=True):
    """A binary stream of a regular file, refusing in one line a folder, pipe or device (a pipe is never waited on), a
    file over `max_bytes`, and, with follow_links=False, a symbolic link. The checks are made on the open file, so a
    file swapped between a check and the read cannot slip through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_links:
            raise InputError(f"{path}: is a symbolic link; expected the {what} itself (a regular file)") from None
        raise InputError(f"{path}: cannot read {what}: {err.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (max_bytes is not None and info.st_size > max_bytes):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path}: is a folder; expected a {what}")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: not a regular file (a pipe, socket or device); expected a {what}")
        raise InputError(f"{path}: {info.st_size:,} bytes is more than a {what} can be ({max_bytes:,} at most)")
    return open(fd, "rb", buffering=0)


def read_regular(path, what="file", max_bytes=None, follow_links=True):
    """The bytes of a regular file (open_regular's checks), at most `max_bytes`."""
    with open_regular(path, what, max_bytes, follow_links) as stream:
        try:
            data = stream.readall() if max_bytes is None else stream.read(max_bytes + 1)
        except OSError as err:
            raise InputError(f"{path}: cannot read {what}: {err.strerror}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(f"{path}: more than {max_bytes:,} bytes: not a {what}")
    return data


def read_bytes(path, what="file"):
    return read_regular(path, what)


# ---------------------------------------------------------------------------------------------------------
# Text: one decoder for every text file this project reads (logs, records, TXT outputs, steps.tsv).

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_text(data, path, what="text file"):
    """The text of `data` as every reader here sees it: UTF-8, a leading BOM dropped, CRLF and lone CR read as LF.

    Refused in one line: UTF-16 or UTF-32 (a BOM or NUL bytes: PowerShell's `>` writes UTF-16), any NUL byte, and
    bytes that are not UTF-8. So a log saved on Windows reads exactly as the same log saved on Linux."""
    head = data[:4096]
    if data.startswith(_UTF16_BOMS) or (b"\x00" in head and head.count(b"\x00") * 4 >= len(head)):
        raise InputError(f"{path}: a {what} in UTF-16 or UTF-32; expected UTF-8 text (convert it, e.g. iconv -f UTF-16 -t UTF-8)")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{path}: a NUL byte at offset {nul:,}: not a {what} (binary data or a damaged file)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: bytes that are not UTF-8 at offset {err.start:,}: not a {what} (expected UTF-8 text)") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_text(path, what="text file", max_bytes=None, follow_links=True):
    """A regular file's text through decode_text (open_regular's checks first)."""
    return decode_text(read_regular(path, what, max_bytes, follow_links), path, what)


def file_digest(path, what="file", follow_links=False):
    """(size, sha256 hex) of a regular file (open_regular's checks; a link refused unless follow_links), read in chunks."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    with open_regular(path, what, follow_links=follow_links) as stream:
        try:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        except OSError as err:
            raise InputError(f"{path}: cannot read {what}: {err.strerror}") from None
    return size, digest.hexdigest()


def latent_batch(seed, index, batch_size):
    """Batch `index` of the latent vectors: N(0, 1) float32 from its own seeded stream, so batches are independent."""
    rng = np.random.default_rng([seed, index])
    return rng.standard_normal((batch_size, LATENT_DIM), dtype=np.float32)


def check_finite(array, path, what="values"):
    """Refuse an array holding NaN or Inf: no picture, comparison or score of it means anything."""
    bad = array.size - int(np.isfinite(array).sum())
    if bad:
        nan = int(np.isnan(array).sum())
        raise InputError(f"{path}: {bad} of {array.size} {what} are not finite ({nan} NaN, {bad - nan} Inf)")
    return array


# ---------------------------------------------------------------------------------------------------------
# Raw float32 tensors (.bin), as GAN_testdata.py writes them and msame reads and writes them.


def count_rows(path, row_size, what="float32 file"):
    """Rows of `row_size` float32 in a raw file, from its size; refuse a size that is not a whole number of rows."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(f"{path}: cannot read {what}: {err.strerror}") from None
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a {what}")
    row_bytes = row_size * 4
    if size == 0 or size % row_bytes:
        raise InputError(f"{path}: {size} bytes is not a whole number of rows of {row_size} float32 ({row_bytes} bytes each)")
    return size // row_bytes


def read_bin(path, row_size, what="float32 file"):
    """Read a raw float32 file as (rows, row_size); refuse a size that is not a whole number of rows."""
    count_rows(path, row_size, what)
    return np.frombuffer(read_bytes(path, what), dtype=np.float32).reshape(-1, row_size)


def write_bin(path, array):
    array = np.ascontiguousarray(array, dtype=np.float32)
    write_bytes_atomic(path, array.tobytes())


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
    data = read_regular(path, "model output")
    values = parse_g_values(data)  # msame's own %g text, every value at once: np.loadtxt's numbers to the bit
    if values is None:
        try:
            # numpy's C parser; it needs the same count of values on every line, which msame's and ais_bench's
            # current formats have. Anything else (msame before 2021-07: 100 values a line) takes the token path.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
                values = np.loadtxt(io.BytesIO(data), dtype=np.float32, ndmin=1).ravel()
        except ValueError:
            values = _parse_tokens(path, data)
    if expected_count is not None and (values.size == 0 or values.size % expected_count):
        raise InputError(f"{path}: {values.size} values is not a whole number of outputs of {expected_count} values")
    return values


def _parse_tokens(path, data):
    tokens = decode_text(data, path, "model output").split()
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes Inf, which check_finite() refuses by name
            return np.array(tokens, dtype=np.float32)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise InputError(f"{path}: expected numbers, found {bad[:20]!r}") from None


def _is_number(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------------
# Offline output files (msame, ais_bench, the ONNX Runtime runner) and online output files.


def read_output(path, image_size=IMG_SIZE):
    """One offline output file (TXT, BIN or NPY) as float32 (batch, 1, 28, 28); NaN or Inf is refused."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        values = parse_txt(path, image_size)
    elif suffix == ".npy":
        values = read_npy(path).astype(np.float32, copy=False).ravel()
        if values.size == 0 or values.size % image_size:
            raise InputError(f"{path}: {values.size} values is not a whole number of images of {image_size} values")
    else:
        values = read_bin(path, image_size, "model output")
    return check_finite(values, path).reshape(-1, *IMG_SHAPE)


def read_npy(path):
    """An .npy file (ais_bench's NPY output) of real numbers; no pickles, no other dtype, one line for anything else."""
    data = read_regular(path, "model output (.npy)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy's header parser fails in many ways (found by fuzzing: EOFError, TokenError)
        raise InputError(f"{path}: not a readable .npy file: {one_line_reason(err)}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiub":
        raise InputError(f"{path}: not an .npy array of real numbers (dtype {getattr(array, 'dtype', type(array).__name__)})")
    return array


def count_output_images(path, image_size=IMG_SIZE):
    """Images in an offline output file (BIN, TXT or NPY), from its size or its values, without keeping them."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        values = len(read_text(path, "model output").split())
    elif suffix == ".npy":
        values = read_npy(path).size
    else:
        values = path.stat().st_size // 4
    return values / image_size


def read_online(path):
    """An online output images/<i>.bin of GAN_testdata.py as float32 (batch, 1, 28, 28); NaN or Inf is refused."""
    return check_finite(read_bin(path, IMG_SIZE, "online output"), path).reshape(-1, *IMG_SHAPE)


def one_line_reason(err):
    return str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__


def numbered_files(folder, suffix):
    """{i: path} for the files <i><suffix> in `folder` (the online images/<i>.bin, the vectors/<i>.bin)."""
    found = {}
    try:
        entries = list(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return found  # nothing there yet: the writer's own folder check says what is wrong
    except OSError as err:
        raise InputError(f"{folder}: cannot list the folder: {err.strerror}") from None
    for path in entries:
        if path.name.endswith(suffix):
            stem = path.name[: -len(suffix)]
            if stem.isdigit():
                found[int(stem)] = path
    return found


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
            grid[top : top + h, left : left + w] = scaled[k, 0]
    pixels = np.clip(grid * np.float32(255) + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.repeat(pixels[:, :, None], 3, axis=2)


# libjpeg (and so Pillow) writes no JPEG taller or wider than 65,500 pixels: a grid of 8 columns holds at most
# JPEG_MAX_IMAGES images (17,464), rows of 28 + 2 pixels under a 2-pixel border.
JPEG_MAX_SIDE = 65500
JPEG_MAX_IMAGES = (JPEG_MAX_SIDE - 2) // 30 * 8


def grid_height(count, nrow=8, padding=2, side=28):
    return side if count == 1 else -(-count // min(nrow, count)) * (side + padding) + padding


def check_grid_fits(count, path):
    """Refuse, before anything is written, a JPEG grid of `count` images that JPEG cannot hold."""
    if _image_format(path) == "JPEG" and grid_height(count) > JPEG_MAX_SIDE:
        raise InputError(
            f"{path}: a grid of {count} images would be {grid_height(count)} pixels tall, over JPEG's limit of "
            f"{JPEG_MAX_SIDE}: use batches of at most {JPEG_MAX_IMAGES} images (or no JPEG grids)"
        )


def save_grid(images, path):
    """Save `images` as one grid picture (format from the extension), atomically; NaN or Inf is refused."""
    from PIL import Image

    path = Path(path)
    check_grid_fits(len(images), path)
    check_finite(np.asarray(images), path, "values of the images to draw")
    with atomic_path(path) as tmp:
        Image.fromarray(grid_array(images)).save(tmp, format=_image_format(path))


def _image_format(path):
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(path).suffix.lower(), "PNG")
