"""Worker-process machinery behind the vector envs: shared-memory arrays and command pipes.

A *block* is any object that owns a contiguous range of envs and reads/writes its rows of a
set of named numpy arrays (actions in; observations, rewards, flags out). A
:class:`WorkerPool` runs one block per ``spawn``-ed worker process over arrays that live in one
``multiprocessing.shared_memory`` segment; per step the parent sends one byte to every worker
and waits for one byte back, so no array is ever pickled on the hot path. An
:class:`InlinePool` runs the same blocks in the calling process (``mode="sync"``), which makes
both modes produce identical numbers.

Any other command is a method call on the block: ``pool.call("reset", args_per_block)``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from mtrl.envs.tasks import EnvError

Layout = Mapping[str, tuple[tuple[int, ...], str]]
"""Array name -> (shape, numpy dtype string)."""


class Block(Protocol):
    """What a worker needs from the envs it owns; other methods are reached via ``call``."""

    def step(self) -> None:
        """Step the owned envs: read actions/mask rows, write result rows."""

    def close(self) -> None:
        """Release the envs."""


BlockFactory = Callable[[dict[str, np.ndarray]], Block]
"""Builds a block over the full-size arrays; must pickle (it is sent to a worker)."""

_STEP = b"s"
_CALL = b"c"
_CLOSE = b"q"
_OK = b"k"
_VALUE = b"v"
_ERROR = b"e"

_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_ALIGN = 64


def split_range(n: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous ``(lo, hi)`` ranges, sizes differing by <= 1."""
    bounds = [k * n // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class SharedArrays:
    """Named numpy arrays laid out in one shared-memory segment.

    The creator (``name=None``) owns the segment and unlinks it in :meth:`close`; other
    processes attach by ``name``.
    """

    def __init__(self, layout: Layout, name: str | None = None) -> None:
        offsets, size = {}, 0
        for key, (shape, dtype) in layout.items():
            offsets[key] = size
            size += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // _ALIGN) * _ALIGN
        self._owner = name is None
        self._shm = SharedMemory(name=name, create=self._owner, size=max(size, _ALIGN))
        self.name = self._shm.name
        self.arrays: dict[str, np.ndarray] = {
            key: np.ndarray(shape, dtype, buffer=self._shm.buf, offset=offsets[key])
            for key, (shape, dtype) in layout.items()
        }

    def close(self) -> None:
        """Drop the views, unmap the segment and (owner only) unlink it. Idempotent."""
        self.arrays.clear()
        with contextlib.suppress(BufferError):  # a stray view keeps the mapping until gc
            self._shm.close()
        if self._owner:
            self._owner = False
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()


def worker_main(conn: Connection, shm_name: str, layout: Layout, factory: BlockFactory) -> None:
    """Entry point of a worker process: build the block, then serve commands until told to quit.

    Replies: ``_OK`` (done), ``_VALUE + pickle`` (a call's result) or ``_ERROR + text``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if "torch" in sys.modules:  # imported by the parent's __main__; keep the worker single-threaded
        sys.modules["torch"].set_num_threads(1)
    shared = SharedArrays(layout, name=shm_name)
    try:
        block = factory(shared.arrays)
    except Exception as exc:
        conn.send_bytes(_ERROR + _describe(exc).encode())
        shared.close()
        return
    conn.send_bytes(_OK)
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # parent is gone
                break
            if message == _CLOSE:
                break
            try:
                if message == _STEP:
                    block.step()
                    reply = _OK
                else:
                    method, args = pickle.loads(message[1:])
                    reply = _VALUE + pickle.dumps(getattr(block, method)(*args))
            except Exception as exc:
                reply = _ERROR + _describe(exc).encode()
            conn.send_bytes(reply)
    finally:
        block.close()
        shared.close()


def _describe(exc: BaseException) -> str:
    """One line naming the exception and, for unexpected ones, where it was raised."""
    if isinstance(exc, EnvError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (inherited by processes started meanwhile)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _shutdown(
    processes: list[mp.process.BaseProcess], conns: list[Connection], shared: SharedArrays
) -> None:
    """Stop the workers (politely, then by force) and free the shared memory."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.send_bytes(_CLOSE)
    deadline = time.monotonic() + 2.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(1.0)
    for conn in conns:
        conn.close()
    shared.close()


class WorkerPool:
    """One ``spawn``-ed worker process per block; arrays in shared memory.

    Construction starts the workers and returns at once (the blocks build in the background);
    the first :meth:`wait` collects their "ready" replies. Any failure (a worker that died, an
    exception inside an env, no answer within ``timeout_s``) shuts the pool down and raises
    :class:`EnvError`; the pool is unusable afterwards.
    """

    def __init__(
        self,
        factories: Sequence[BlockFactory],
        ranges: Sequence[tuple[int, int]],
        layout: Layout,
        timeout_s: float = 300.0,
    ) -> None:
        self.ranges = list(ranges)
        self.timeout_s = timeout_s
        self._shared = SharedArrays(layout)
        self.arrays = self._shared.arrays
        context = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._processes: list[mp.process.BaseProcess] = []
        child_ends = []
        for index, factory in enumerate(factories):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(child_end, self._shared.name, dict(layout), factory),
                name=f"mtrl-env-worker-{index}",
                daemon=True,
            )
            self._conns.append(parent_end)
            self._processes.append(process)
            child_ends.append(child_end)
        self._finalizer = weakref.finalize(
            self, _shutdown, self._processes, self._conns, self._shared
        )
        with _environ(_SINGLE_THREAD_ENV):
            for process in self._processes:
                process.start()
        for child_end in child_ends:  # so that a dead worker reads as EOF on our end
            child_end.close()
        self._pending = set(range(len(self._processes)))

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [process.pid for process in self._processes if process.pid is not None]

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def send_step(self) -> None:
        """Tell every worker to step its block (the hot path: one byte each)."""
        self._send([_STEP] * len(self._conns))

    def send_call(self, method: str, args: Sequence[tuple]) -> None:
        """Ask worker ``k`` to run ``block.method(*args[k])``."""
        self._send([_CALL + pickle.dumps((method, a)) for a in args])

    def call(self, method: str, args: Sequence[tuple]) -> list[Any]:
        """:meth:`send_call` then :meth:`wait`."""
        self.send_call(method, args)
        return self.wait()

    def wait(self) -> list[Any]:
        """Wait for every worker's reply to the last command; returns the per-block results."""
        self._check_open()
        results: list[Any] = [None] * len(self._conns)
        errors: list[str] = []
        deadline = time.monotonic() + self.timeout_s
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = ", ".join(self._label(k) for k in sorted(self._pending))
                self._fail(f"no answer within {self.timeout_s:.0f} s from {late}")
            watched = {self._conns[k]: k for k in self._pending}
            watched.update({self._processes[k].sentinel: k for k in self._pending})
            for ready in wait(list(watched), timeout=remaining):
                k = watched[ready]
                if k not in self._pending:
                    continue
                reply = self._receive(k)
                if reply is None:
                    self._fail(self._death(k))
                self._pending.discard(k)
                if reply[:1] == _VALUE:
                    results[k] = pickle.loads(reply[1:])
                elif reply[:1] == _ERROR:
                    errors.append(f"{self._label(k)}: {reply[1:].decode(errors='replace')}")
        if errors:
            self._fail(errors[0])
        return results

    def close(self) -> None:
        """Shut the workers down and free the shared memory. Idempotent."""
        self._pending.clear()
        self._finalizer()

    def _send(self, messages: Sequence[bytes]) -> None:
        self._check_open()
        if self._pending:
            raise EnvError("a command is still pending; wait() for it first")
        for k, (conn, message) in enumerate(zip(self._conns, messages)):
            try:
                conn.send_bytes(message)
            except OSError:
                sent = False
            else:
                sent = True
            if not sent:
                self._fail(self._death(k))
            self._pending.add(k)

    def _receive(self, k: int) -> bytes | None:
        """Worker ``k``'s reply, or None if it is dead (EOF, or only its sentinel is ready)."""
        conn = self._conns[k]
        try:
            return conn.recv_bytes() if conn.poll() else None
        except (EOFError, OSError):
            return None

    def _check_open(self) -> None:
        if self.closed:
            raise EnvError("the environment workers are closed")

    def _label(self, k: int) -> str:
        lo, hi = self.ranges[k]
        return f"env worker {k} (pid {self._processes[k].pid}, envs {lo}..{hi - 1})"

    def _death(self, k: int) -> str:
        process = self._processes[k]
        process.join(1.0)
        code = process.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return f"{self._label(k)} {how}"

    def _fail(self, message: str) -> None:
        self.close()
        raise EnvError(message)


class InlinePool:
    """The :class:`WorkerPool` interface, running the blocks in the calling process."""

    def __init__(
        self, factories: Sequence[BlockFactory], ranges: Sequence[tuple[int, int]], layout: Layout
    ) -> None:
        self.ranges = list(ranges)
        self.arrays = {key: np.zeros(shape, dtype) for key, (shape, dtype) in layout.items()}
        self._blocks = [factory(self.arrays) for factory in factories]
        self._results: list[Any] = [None] * len(self._blocks)
        self.closed = False

    @property
    def pids(self) -> list[int]:
        """No worker processes: empty."""
        return []

    def send_step(self) -> None:
        self._check_open()
        for block in self._blocks:
            block.step()

    def send_call(self, method: str, args: Sequence[tuple]) -> None:
        self._check_open()
        self._results = [getattr(b, method)(*a) for b, a in zip(self._blocks, args)]

    def call(self, method: str, args: Sequence[tuple]) -> list[Any]:
        self.send_call(method, args)
        return self.wait()

    def wait(self) -> list[Any]:
        results, self._results = self._results, [None] * len(self._blocks)
        return results

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for block in self._blocks:
                block.close()

    def _check_open(self) -> None:
        if self.closed:
            raise EnvError("the environment is closed")
