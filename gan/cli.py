"""What every step shares as a command-line program: one-line errors, signals, argument types, path checks.

A step's main(args) runs under run_main(): a user error (InputError), any OSError (a missing, unreadable or
unwritable file, a full disk, a path the system cannot take), a path that is not valid UTF-8, SIGINT and
SIGTERM all end as one line on stderr, `<prog>: error: <file>: <reason>`, and a non-zero exit, never a
traceback. SIGINT and SIGTERM unwind the stack like an exception, so every temporary file is removed on the
way out (gan.files.atomic_path). Bugs still raise. Needs only the standard library.
"""

import argparse
import contextlib
import math
import os
import re
import signal
import stat
import sys
from pathlib import Path


class InputError(Exception):
    """A problem the user can fix (missing file, wrong size, wrong format). Printed as one line, no traceback."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, so that no `except Exception` swallows it on the way out."""

    def __init__(self, signum):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_deferring = 0  # > 0 while a temporary file is being created and not yet owned by a try block
_pending = None


def _raise_interrupted(signum, frame):
    global _pending
    if _deferring:
        _pending = signum
        return
    # Ignore repeats while the stack unwinds, so that the clean-up of temporary files is not cut short.
    for other in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT / SIGTERM / SIGHUP back for a few statements (creating a file and recording its name);
    one that arrived meanwhile is raised when the block ends."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            _raise_interrupted(signum, None)


_program = None


def program_name():
    """The name errors are signed with: the script the user ran (run_msame.sh and run_pipeline.sh set GAN_PROG for
    the Python step they start), else this script's file name."""
    return _program or os.environ.get("GAN_PROG") or os.path.basename(sys.argv[0]) or "python"


def exit_on_signal_until_ready(module_name):
    """Called first by every script, before its slow imports (torch, onnxruntime, numpy): until run_main() takes
    over, SIGINT, SIGTERM and SIGHUP end the process with one line and 128 + the signal, since nothing has been
    written yet. Does nothing when the script is imported as a module."""
    if module_name != "__main__":
        return

    def starting(signum, frame):
        name = signal.Signals(signum).name
        os.write(2, f"{program_name()}: error: interrupted by {name} while starting; nothing was done\n".encode(errors="replace"))
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, starting)


def missing_modules(*modules):
    """The modules of `modules` that this Python cannot import (not installed, or broken)."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _needs(missing):
    return (
        f"this step needs {' and '.join(missing)}, which {sys.executable} cannot import: pip install -r requirements.txt "
        f"(requirements-offline.txt installs only the offline half: run_msame.sh, GAN_txt2jpg.py, GAN_compare.py, "
        f"GAN_eval.py, perf_calc.py, perf_sweep.py, GAN_report.py)"
    )


def import_required(*modules):
    """Inside a step's main(): refuse in one line (InputError) where torch or onnx cannot be imported."""
    missing = missing_modules(*modules)
    if missing:
        raise InputError(_needs(missing))


def require_modules(module_name, get_args_parser, *modules):
    """Called by a step that needs torch (or onnx) before it imports them: on a host without them (an inference host set
    up from requirements-offline.txt) --help still works, a bad flag is still exit 2, and anything else ends in one
    line naming what to install, exit 1, instead of an import traceback. Does nothing when imported as a module."""
    if module_name != "__main__":
        return
    missing = missing_modules(*modules)
    if missing:
        run_main(lambda args: import_required(*missing), get_args_parser())
        sys.exit(1)


def install_signal_handlers():
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)


class _NamedStdout:
    """sys.stdout whose write errors (a full disk under `> log`, a closed pipe) name it: "standard output: ..."."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as err:
            raise InputError(f"standard output: {err.strerror or err}") from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as err:
            raise InputError(f"standard output: {err.strerror or err}") from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def describe_os_error(err):
    """`<file>: <reason>` for any OSError, naming the file whenever the system told which one."""
    reason = err.strerror or str(err) or type(err).__name__
    if not isinstance(err.filename, (str, bytes, os.PathLike)):
        return reason
    text = f"{os.fsdecode(err.filename)}: {reason}"
    return text + (f" (and {os.fsdecode(err.filename2)})" if err.filename2 is not None else "")


def one_line(text):
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def run_main(main, parser, argv=None, pass_unknown=False):
    """Run a step's main(args); every fault a user can meet ends as one line on stderr and a non-zero exit.

    Bad flags exit 2 (argparse's convention), bad files and faults exit 1, a signal 128 + its number. With
    pass_unknown, flags the parser does not know are kept in args.unknown (for a driver that hands them on).
    """

    def fail(code, message):
        print(f"{parser.prog}: error: {one_line(message)}", file=sys.stderr)
        try:
            sys.stdout.flush()
        except (OSError, InputError):  # stdout itself failed: drop what it still holds, it cannot be written
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.exit(code)

    def one_line_usage_error(message):
        fail(2, f"{message} (see --help)")

    global _program
    parser.prog = _program = os.environ.pop("GAN_PROG", None) or parser.prog  # not passed on to the tools this step starts
    parser.error = one_line_usage_error
    # Paths that are not valid UTF-8 reach Python as surrogate escapes; print them back as the bytes they were.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
        sys.stdout = _NamedStdout(sys.stdout)
    install_signal_handlers()
    caught = _hold_warnings()
    try:
        if pass_unknown:
            args, args.unknown = parser.parse_known_args(argv)
        else:
            args = parser.parse_args(argv)
        _refuse_empty_values(parser, args)
        result = main(args)
        sys.stdout.flush()
        _say_warnings(parser.prog, caught)
        return result
    except InputError as err:
        fail(1, err)
    except OSError as err:
        fail(1, describe_os_error(err))
    except UnicodeError as err:
        fail(1, f"a path or name is not valid UTF-8 ({type(err).__name__}: {err.reason}): rename it")
    except Interrupted as err:
        fail(128 + err.signum, f"interrupted by {err}; temporary files removed, nothing reported as done")
    except MemoryError:
        fail(1, "not enough memory for this step: use smaller batches or fewer files at a time")
    except KeyboardInterrupt:
        fail(128 + signal.SIGINT, "interrupted by SIGINT; temporary files removed, nothing reported as done")


def _refuse_empty_values(parser, args):
    """argparse reads `--flag=--` as an empty list and skips the flag's type and choices: refused as no value."""
    for action in parser._actions:
        if action.nargs is None and action.option_strings:
            value = getattr(args, action.dest, None)
            appended = isinstance(action, argparse._AppendAction)
            if (appended and isinstance(value, list) and [] in value) or (not appended and value == [] and action.default != []):
                parser.error(f"argument {'/'.join(action.option_strings)}: expected one argument ('--' is not a value)")


def _hold_warnings():
    """Library warnings are held back while the step runs: a failure is its one line alone (numpy's `RuntimeWarning:
    overflow` above a refusal of an out-of-range model is no second voice); on success each is said once, below."""
    import warnings

    caught = []
    warnings.simplefilter("default")
    warnings.showwarning = lambda message, category, *rest, **kw: caught.append((category, str(message)))
    return caught


def _say_warnings(prog, caught):
    """Once each, signed by the script: what a library warned of that may matter to the user (not the deprecation notes
    meant for this project's developers)."""
    said = set()
    for category, message in caught:
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) or (category, message) in said:
            continue
        said.add((category, message))
        print(f"{prog}: warning: {one_line(message)} ({category.__name__})", file=sys.stderr)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help as every script shows it: the description as written, and each flag's default said once (not where its
    help already says it, not None, not for a switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        hidden = any(action.default is value for value in (None, False, argparse.SUPPRESS))  # `is`: a default of 0 is shown
        if "default" in text.lower() or hidden or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def positive_int(text):
    """argparse type for counts such as --iters and --batch_size: 0 or negative is refused at parse time."""
    value = _int(text, "a positive integer")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text):
    """argparse type for seeds: numpy's seed sequences take integers >= 0."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def seed32(text):
    """argparse type for a seed of torch and numpy's legacy generator (np.random.seed): 0 to 2**32 - 1."""
    value = _int(text, "an integer from 0 to 4294967295")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 4294967295 (2**32 - 1), got {text.strip()[:40]}")
    return value


def batch_sizes(text):
    """argparse type for a list of batch sizes, "1 16 64" or "1,16,64": distinct positive integers, in the given order."""
    try:
        sizes = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected whole numbers such as "1 16 64" or 1,16,64, got {text!r}') from None
    if not sizes or any(s <= 0 for s in sizes) or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"expected distinct positive batch sizes, got {text!r}")
    return sizes


def one_of_list(choices):
    """An argparse type: a comma-separated list of `choices` (empty allowed), as a list; else one line naming them."""

    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        wrong = [item for item in items if item not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}, got {text.strip()[:40]!r}")
        return items

    parse.__name__ = "list of " + ", ".join(choices)
    return parse


def outfmt(text):
    """argparse type for --outfmt: TXT, BIN or NPY in any case (msame itself takes upper case only; it is passed so)."""
    return text.upper()


def non_negative_float(text):
    """argparse type for tolerances such as --max_diff: a finite number >= 0 (NaN would pass every comparison)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def bounded_number(kind, accept, expected):
    """An argparse type: `kind(text)` (int or float), finite, for which accept(value) holds; else one line, "expected
    <expected>, got <text>". For flags with a range of their own (GAN_regression.py's --factor, --alpha, ...)."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (isinstance(value, float) and not math.isfinite(value)) or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text.strip()[:40]!r}")
        return value

    parse.__name__ = expected
    return parse


def _int(text, expected):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def short_list(items, limit=6):
    """`a, b, c and 4 more`: a list that keeps an error message to one readable line."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def progress(iterable, quiet=False, **kwargs):
    """A tqdm progress bar on a terminal, nothing in logs or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Paths: no command may write over what it reads.


def refuse_overlap(inputs, outputs):
    """Refuse, before anything is written, an output path that is an input path or lies inside an input folder.

    inputs and outputs are (flag, path) pairs; None paths are skipped. Paths are compared after following
    symbolic links, and an existing output file that is a hard link of an input file counts as the same file.
    Two outputs of one command may not be the same path either.
    """
    inputs = [(flag, Path(path)) for flag, path in inputs if path is not None]
    outputs = [(flag, Path(path)) for flag, path in outputs if path is not None]
    for k, (out_flag, out) in enumerate(outputs):
        real_out = Path(os.path.realpath(out))
        for in_flag, inp in inputs:
            real_in = Path(os.path.realpath(inp))
            if real_out == real_in or _same_file(out, inp):
                raise InputError(
                    f"{out}: {out_flag} is the same path as {in_flag} {inp}: writing it would destroy an input; choose another path"
                )
            if real_in in real_out.parents and real_in.is_dir():
                raise InputError(f"{out}: {out_flag} lies inside the input folder {in_flag} {inp}: choose a path outside it")
        for other_flag, other in outputs[k + 1 :]:
            if real_out == Path(os.path.realpath(other)):
                raise InputError(f"{out}: {out_flag} and {other_flag} are the same path: one would replace the other")


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def ensure_dir(path, what="output folder"):
    """Create a folder (with parents) and check that we can write into it; one clear error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create {what}: {err.strerror}") from None
    if not path.is_dir():
        raise InputError(f"{path}: {what} exists and is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{path}: {what} is not writable")
    return path


def refuse_special_output(path):
    """A device, pipe or socket is never replaced by an output file (`--save_json /dev/null` keeps /dev/null)."""
    with contextlib.suppress(OSError):
        if stat.S_IFMT(os.lstat(path).st_mode) not in (stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR):
            raise InputError(f"{path}: is a device, pipe or socket; expected a path for a regular file")


def check_output_file(path, flag):
    """An output file path must not be a folder; its folder is created if missing. Checked before any work."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: {flag} is a folder; expected a file path")
    refuse_special_output(path)
    ensure_dir(path.parent, f"the folder of {flag}")
    return path


# ---------------------------------------------------------------------------------------------------------
# Child processes die with their parent.


def die_with_parent(parent_pid):
    """In a child process: be killed when the parent dies (Linux PR_SET_PDEATHSIG), and exit now if it already has.

    Elsewhere the caller's own check of os.getppid() between work items is the fallback.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def pid_alive(pid):
    """Whether a process with this id exists (on this host)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def memory_limits():
    """[(bytes a new allocation may take, what limits it)]: MemAvailable, the address-space limit (ulimit -v) less what
    this process has mapped, and its cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) less its usage."""
    limits = []
    meminfo = _read_numbers("/proc/meminfo", "MemAvailable:")
    if meminfo is not None:
        limits.append((meminfo * 1024, "available (MemAvailable)"))
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _read_numbers("/proc/self/status", "VmSize:")
    if soft != resource.RLIM_INFINITY and mapped is not None:
        limits.append((max(0, soft - mapped * 1024), f"left under the address-space limit (ulimit -v {soft // 1024})"))
    for limit, usage in _cgroup_files():
        limit_bytes, used = _read_numbers(limit), _read_numbers(usage)
        if limit_bytes is not None and used is not None and limit_bytes < 2**62:
            limits.append((max(0, limit_bytes - used), f"left under the cgroup's limit ({limit})"))
            break
    return limits


def _read_numbers(path, key=None):
    """The first number of a file, or of its line starting with `key`; None where absent or unreadable."""
    try:
        for line in Path(path).read_text().splitlines():
            if key is None or line.startswith(key):
                return int(line.split()[1 if key else 0])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_files():
    """(limit file, usage file) of this process's memory cgroup, v2 then v1, where they exist."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            roots, names = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"], ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            roots, names = ["/sys/fs/cgroup/memory"], ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        for root in roots:
            for folder in (Path(root + path), Path(root)):  # inside a container the cgroup is often the mount's root
                if (folder / names[0]).is_file():
                    found.append((folder / names[0], folder / names[1]))
                    break
    return found


def check_memory(need_bytes, subject, advice="use smaller batches"):
    """Refuse, before any work, a step that would need more memory than it may take (rather than be killed by the
    kernel halfway, with no message, or fail inside a library)."""
    limits = memory_limits()
    if limits:
        free, what = min(limits)
        if need_bytes > free:
            raise InputError(f"{subject} needs about {need_bytes / 2**30:.1f} GiB of memory, {free / 2**30:.1f} GiB is {what}: {advice}")
