"""How the emulator's SCF runs a deployed function: the uploaded zip, each invocation in a process
of its own, with the environment SCF gives it, limited by the function's Timeout.

The zip is unpacked into a directory of its own (one per code version, kept until the emulator
stops). An invocation runs `<python> -S -c RUNNER` with that directory as its working directory
and `sys.path[0]`: `-S` leaves site-packages out, so the function imports only what its zip
carries, as on SCF. RUNNER reads `{"handler", "event", "context"}` from stdin, imports the handler's
file ("index.main_handler": index.py), tells the emulator it is ready, calls the handler with
(event, context) and writes the answer as JSON on stdout. What the function itself prints or logs
goes to stderr, its log. Start-up (the import) is bounded by SCF's InitTimeout in real seconds —
importing is real work that no speedup shortens — and the call by the function's Timeout divided
by the speedup (but at least emulator.scf.MIN_RUN_S); past either the process group is killed.

Asynchronous invocations (timers, `Invoke` with InvocationType Event) that fail are tried again
twice, one and then two emulator minutes later, as SCF retries an asynchronous invocation's user
errors (doc 583/39851). Every attempt is recorded: `invocations(name)`.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNNER = r"""
import importlib, json, os, sys
envelope = json.loads(sys.stdin.buffer.read())
answer = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the function's own prints go to its log (stderr); stdout carries the answer
code = os.getcwd()
sys.path[0:1] = [code]
module, _, name = envelope["handler"].rpartition(".")
handler = getattr(importlib.import_module(module), name)
answer.write("ready\n")
answer.flush()
result = handler(envelope["event"], envelope["context"])
answer.write(json.dumps(result))
answer.flush()
"""
READY = b"ready\n"
INIT_TIMEOUT_S = 65.0  # SCF's default InitTimeout
ASYNC_RETRY_DELAYS_S = (60.0, 120.0)  # emulator seconds before the 2nd and 3rd attempt
KEPT_INVOCATIONS = 500  # per function
STDERR_TAIL = 4000  # characters of the log kept per invocation
MAX_RUNNING = 8  # processes at once; further invocations wait their turn


@dataclass(frozen=True)
class RunSpec:
    """Everything one invocation needs, taken from the function when it is invoked."""

    function: str
    function_id: str  # which creation of the function: a deleted one runs no more retries
    handler: str
    runtime: str
    code_dir: Path
    env: dict[str, str]
    timeout_s: float  # real seconds: the function's Timeout / speedup (emulator.scf.MIN_RUN_S)
    context: dict[str, Any]


@dataclass
class Invocation:
    function: str
    trigger: str  # "timer:<name>", "url:<id>", "invoke:Event", "invoke:RequestResponse"
    request_id: str
    attempt: int = 1
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0
    ended: bool = False
    exit: int | None = None  # the process's exit status; None while it runs, or if it never started
    timed_out: bool = False
    answer: Any = None
    error: str | None = None  # why it failed; None when it answered
    stderr: str = ""  # the log's tail

    @property
    def ok(self) -> bool:
        return self.ended and self.error is None

    def record(self) -> dict[str, Any]:
        return {"function": self.function, "trigger": self.trigger, "request_id": self.request_id,
                "attempt": self.attempt, "started": self.started, "duration_s": self.duration_s,
                "ended": self.ended, "exit": self.exit, "timed_out": self.timed_out, "ok": self.ok,
                "answer": self.answer, "error": self.error, "stderr": self.stderr}


def interpreter_for(runtime: str) -> str | None:
    """A CPython of the function's Runtime ("Python3.10": python3.10 on PATH, or a pyenv's), if
    this machine has one that starts."""
    version = runtime.removeprefix("Python")
    found = [shutil.which(f"python{version}"),
             *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))]
    for exe in filter(None, found):
        if subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


class Runtime:
    def __init__(self, python: str | None = None, *, speedup: float = 1.0,
                 init_timeout_s: float = INIT_TIMEOUT_S) -> None:
        # Given: every function runs on it. Otherwise each on a CPython of its Runtime, or on this
        # interpreter where the machine has none (said once on stderr).
        self.fixed_python = python
        self.python = python or sys.executable
        self._interpreters: dict[str, str] = {}
        self.speedup, self.init_timeout_s = speedup, init_timeout_s
        self._root: Path | None = None
        self._log: dict[str, collections.deque[Invocation]] = collections.defaultdict(
            lambda: collections.deque(maxlen=KEPT_INVOCATIONS))
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._retired: set[str] = set()
        self._threads: set[threading.Thread] = set()
        self._slots = threading.BoundedSemaphore(MAX_RUNNING)
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    # --- code --------------------------------------------------------------------------------
    def unpack(self, archive: zipfile.ZipFile, function: str) -> Path:
        """A new directory holding the zip's files (zipfile drops absolute and `..` paths)."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="emulator-scf-"))
            root = self._root
        target = Path(tempfile.mkdtemp(prefix=f"{function}-", dir=root))
        archive.extractall(target)
        return target

    def interpreter(self, runtime: str) -> str:
        if self.fixed_python:
            return self.fixed_python
        with self._lock:
            if runtime not in self._interpreters:
                exe = interpreter_for(runtime)
                if exe is None:
                    print(f"emulator: no {runtime} interpreter here; SCF functions run on "
                          f"{sys.executable}", file=sys.stderr)
                self._interpreters[runtime] = exe or sys.executable
            return self._interpreters[runtime]

    # --- running -----------------------------------------------------------------------------
    def run(self, spec: RunSpec, event: Any, trigger: str, attempt: int = 1,
            request_id: str | None = None) -> Invocation:
        """One invocation, to its end (answered, failed, or killed at its timeout)."""
        inv = Invocation(spec.function, trigger, request_id or str(uuid.uuid4()), attempt)
        with self._lock:
            self._log[spec.function].append(inv)
        if not spec.runtime.startswith("Python3"):
            return self._end(inv, time.monotonic(), error=f"the emulator runs Python 3 runtimes only, "
                                                          f"not {spec.runtime}")
        with self._slots:
            if self._stopping.is_set():
                return self._end(inv, time.monotonic(), error="the emulator stopped")
            return self._run(spec, event, inv)

    def start(self, spec: RunSpec, event: Any, trigger: str) -> str:
        """An asynchronous invocation: runs on a thread of its own, retried twice if it fails;
        returns its request id at once."""
        request_id = str(uuid.uuid4())
        thread = threading.Thread(target=self._run_async, args=(spec, event, trigger, request_id),
                                  name=f"scf-{spec.function}", daemon=True)
        with self._lock:
            if self._stopping.is_set():
                return request_id
            self._threads.add(thread)
        thread.start()
        return request_id

    def _run_async(self, spec: RunSpec, event: Any, trigger: str, request_id: str) -> None:
        try:
            for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS_S), 1):
                if self._stopping.wait(delay / self.speedup) or spec.function_id in self._retired:
                    return
                if self.run(spec, event, trigger, attempt, request_id).ok:
                    return
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run(self, spec: RunSpec, event: Any, inv: Invocation) -> Invocation:
        begun = time.monotonic()
        context = {**spec.context, "request_id": inv.request_id}
        envelope = json.dumps({"handler": spec.handler, "event": event, "context": context})
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
            stdin.write(envelope.encode())
            stdin.seek(0)
            python = self.interpreter(spec.runtime)
            try:
                proc = subprocess.Popen([python, "-S", "-c", RUNNER], cwd=spec.code_dir,
                                        env=spec.env, stdin=stdin, stdout=subprocess.PIPE,
                                        stderr=stderr, start_new_session=True)
            except OSError as e:
                return self._end(inv, begun, error=f"cannot start {python}: {e.strerror or e}")
            with self._lock:
                self._procs.add(proc)
            try:
                out, error = self._wait(proc, spec)
            finally:
                with self._lock:
                    self._procs.discard(proc)
            stderr.seek(0)
            log = stderr.read().decode("utf-8", "replace")
        inv.exit, inv.stderr = proc.returncode, log[-STDERR_TAIL:]
        inv.timed_out = error is not None and "timed out" in error
        if error is None and proc.returncode != 0:
            error = f"the function failed (exit status {proc.returncode}): {_last_line(log)}"
        if error is None:
            try:
                inv.answer = json.loads(out)
            except ValueError:
                error = "the function's answer is not JSON"
        return self._end(inv, begun, error=error)

    def _wait(self, proc: subprocess.Popen[bytes], spec: RunSpec) -> tuple[bytes, str | None]:
        """The answer bytes, and why the run failed (None if the process ended by itself)."""
        assert proc.stdout is not None
        reader = _Reader(proc.stdout)
        if not reader.ready.wait(self.init_timeout_s):
            _kill(proc)
            reader.join()
            return b"", f"start-up timed out after {self.init_timeout_s:g} s"
        if reader.ended and not reader.saw_ready:
            proc.wait()
            reader.join()
            return b"", None  # it ended before calling the handler: an import error, in its log
        try:
            proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            reader.join()
            return b"", f"timed out after {spec.timeout_s:g} s"
        reader.join()
        return reader.data[len(READY):], None

    def _end(self, inv: Invocation, begun: float, *, error: str | None) -> Invocation:
        inv.duration_s, inv.error, inv.ended = time.monotonic() - begun, error, True
        return inv

    def retire(self, function_id: str) -> None:
        """The function was deleted: its pending retries are dropped (running ones end as they do)."""
        with self._lock:
            self._retired.add(function_id)

    # --- what happened -----------------------------------------------------------------------
    def invocations(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return [inv.record() for inv in self._log.get(function, ())]

    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    def stop(self) -> None:
        """No new invocations; running processes killed, asynchronous ones ended, code removed."""
        self._stopping.set()
        with self._lock:
            procs, threads = list(self._procs), list(self._threads)
        for proc in procs:
            _kill(proc)
        for thread in threads:
            thread.join(timeout=5)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)


class _Reader:
    """Reads a process's stdout to its end on a thread; `ready` is set once the runner says it is
    ready, or once stdout ends without saying so."""

    def __init__(self, stream: io.BufferedReader | Any) -> None:
        self.data = b""
        self.saw_ready = self.ended = False
        self.ready = threading.Event()
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True, name="scf-stdout")
        self._thread.start()

    def _read(self) -> None:
        chunks: list[bytes] = []
        while chunk := self._stream.read1(65536):
            chunks.append(chunk)
            if not self.saw_ready and b"".join(chunks).startswith(READY):
                self.saw_ready = True
                self.ready.set()
        self.data = b"".join(chunks)
        self.ended = True
        self.ready.set()

    def join(self) -> None:
        self._thread.join(timeout=5)
        self._stream.close()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the function's own children too
    proc.wait()


def _last_line(log: str) -> str:
    lines = [line for line in log.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no log"
