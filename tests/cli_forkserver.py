"""A fork server for the command-line fuzzer (tests/test_cli_fuzz.py): each request runs one project script in a
fresh child process exactly as `python3 script.py ARGS` would (its own session, stdin from /dev/null, stdout and
stderr to files, `__main__`, sys.argv, sys.path[0], the interpreter's own exit-code rules), but the heavy
libraries the scripts import (torch, onnx, onnxruntime, numpy, Pillow, matplotlib) are imported once, here,
so that a run costs milliseconds of start-up instead of seconds and a campaign can try thousands of inputs.

Nothing of the project is imported here: every child imports and runs the project's code fresh.
Protocol: one JSON request per line on stdin ({"argv", "cwd", "env", "stdout", "stderr", "timeout"}), one JSON
reply per line on stdout ({"rc", "signal", "timed_out", "survivors", "seconds"}).
"""

import contextlib
import io
import json
import os
import runpy
import signal
import sys
import time
import traceback

import matplotlib  # noqa: F401  (imported for the children: not a backend choice)
import numpy  # noqa: F401
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import PIL.Image  # noqa: F401

try:
    import torch  # noqa: F401
except ImportError:  # the torch-free host: the scripts that need torch say so themselves
    pass


def run_child(request):
    """In the forked child: become `python3 script.py ARGS`; never returns."""
    code = 1
    try:
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        # The interpreter's own streams for files: stdout block-buffered and strict, stderr line-buffered with
        # backslashreplace (what python3 sets up at start, in a UTF-8 locale).
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code & 0xFF
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001  (what the interpreter does with an uncaught exception)
            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    finally:
        os._exit(code)


def serve(requests, replies):
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            requests.close()
            replies.close()
            run_child(request)
        deadline = started + request["timeout"]
        status, timed_out = None, False
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
            elif time.monotonic() > deadline:
                timed_out = True
                os.killpg(pid, signal.SIGKILL)
                status = os.waitpid(pid, 0)[1]
            else:
                time.sleep(0.005)
        seconds = time.monotonic() - started
        try:  # anything of the run's process group still alive once it has exited
            os.killpg(pid, 0)
            survivors = True
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            survivors = False
        reply = {
            "rc": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "timed_out": timed_out,
            "survivors": survivors,
            "seconds": seconds,
        }
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    # Requests and replies on their own descriptors, so that nothing a library prints can mix with them.
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_RDWR), 0)
    os.dup2(2, 1)
    serve(requests, replies)
