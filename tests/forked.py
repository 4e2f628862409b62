"""Worker processes forked from a server that imported torch once, instead of started from scratch.

A fresh ``python -m optnas.cli worker`` spends about 5 s of CPU importing torch, torchvision,
OFA and SciPy before its first trial; the multi-worker tests start a dozen of them on two
cores. multiprocessing's forkserver imports those libraries once, in a process of its own
that has run nothing else, and forks each worker from it: the workers are still separate
processes with their own storage connections (what these tests are about), and each still
imports optnas itself, so the environment it is given is read as in a fresh process.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

# Third-party only: optnas reads settings from the environment when imported (the heartbeat).
PRELOAD = ["torch", "torchvision", "ofa.imagenet_classification.elastic_nn.networks", "scipy.stats", "sklearn",
           "optuna", "sqlalchemy"]

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _run(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """The child: ``python -m MODULE ARGS`` (argv[0] == "-m") or ``python -c CODE ARGS`` (argv[0] == "-c")."""
    os.environ.update(env)
    os.chdir(cwd)
    for path, fd in ((out, 1), (err, 2)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    flag, target, *args = argv
    if flag == "-m":
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})


class Forked:
    """A forked ``python`` process with the part of :class:`subprocess.Popen` the tests use."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        """Start it.

        Args:
            argv: the arguments after ``python``: ``["-m", module, ...]`` or ``["-c", code, ...]``.
            cwd: its working directory.
            env: variables set on top of this process's environment.
        """
        self._folder = tempfile.TemporaryDirectory()
        self._out, self._err = (str(Path(self._folder.name) / name) for name in ("out", "err"))
        self.args = argv
        self._process = _CONTEXT.Process(target=_run, args=(argv, env or {}, str(cwd), self._out, self._err))
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), None while it runs."""
        return self._process.exitcode

    def kill(self) -> None:
        """Kill it (SIGKILL); :meth:`communicate` then returns what it wrote before."""
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for it to exit and return what it wrote to stdout and stderr."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        texts = tuple(Path(path).read_text() for path in (self._out, self._err))
        self._folder.cleanup()
        return texts
