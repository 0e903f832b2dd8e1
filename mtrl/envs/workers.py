"""Worker-process machinery behind the vector envs: shared-memory arrays and command pipes.

A *block* is any object that owns a contiguous range of envs and reads/writes its rows of a
set of named numpy arrays (actions in; observations, rewards, flags out). A
:class:`WorkerPool` is a set of ``spawn``-ed worker processes; each vector env places one
block per worker in it as a :class:`WorkerGroup` over its own ``multiprocessing.shared_memory``
segment, so training and evaluation envs share the same processes. Per step the parent sends
two bytes to every worker and waits for one byte back, so no array is ever pickled on the hot
path. An :class:`InlinePool` runs the same blocks in the calling process (``mode="sync"``),
which makes both modes produce identical numbers.

Any other command is a method call on the block: ``group.call("reset", args_per_block)``.
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

_STEP = b"s"  # + group byte
_CALL = b"c"  # + pickle((group, method, args))
_ADD = b"a"  # + pickle((group, shm name, layout, factory))
_DROP = b"d"  # + group byte
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


def worker_main(conn: Connection) -> None:
    """Entry point of a worker process: serve commands until told to quit.

    A worker hosts any number of *groups* (one block over one shared-memory segment each), so
    that several vector envs (training and evaluation) share the same processes. Replies:
    ``_OK`` (done), ``_VALUE + pickle`` (a call's result) or ``_ERROR + text``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if "torch" in sys.modules:  # imported by the parent's __main__; keep the worker single-threaded
        sys.modules["torch"].set_num_threads(1)
    groups: dict[int, tuple[Block, SharedArrays]] = {}
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except EOFError:  # parent is gone
                break
            kind = message[:1]
            if kind == _CLOSE:
                break
            try:
                reply = _serve(groups, kind, message[1:])
            except Exception as exc:
                reply = _ERROR + _describe(exc).encode()
            conn.send_bytes(reply)
    finally:
        for block, shared in groups.values():
            block.close()
            shared.close()


def _serve(groups: dict[int, tuple[Block, SharedArrays]], kind: bytes, body: bytes) -> bytes:
    """Run one command in a worker; returns the reply."""
    if kind == _STEP:
        groups[body[0]][0].step()
        return _OK
    if kind == _CALL:
        group, method, args = pickle.loads(body)
        return _VALUE + pickle.dumps(getattr(groups[group][0], method)(*args))
    if kind == _ADD:
        group, shm_name, layout, factory = pickle.loads(body)
        shared = SharedArrays(layout, name=shm_name)
        try:
            groups[group] = (factory(shared.arrays), shared)
        except BaseException:
            shared.close()
            raise
        return _OK
    if kind == _DROP:
        block, shared = groups.pop(body[0])
        block.close()
        shared.close()
        return _OK
    raise EnvError(f"unknown worker command {kind!r}")


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
    processes: list[mp.process.BaseProcess], conns: list[Connection], segments: list[SharedArrays]
) -> None:
    """Stop the workers (politely, then by force) and free every group's shared memory."""
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.send_bytes(_CLOSE)
    processes = [process for process in processes if process.pid is not None]  # started ones
    deadline = time.monotonic() + 2.0
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(1.0)
    for conn in conns:
        conn.close()
    for shared in segments:
        shared.close()
    segments.clear()


class WorkerPool:
    """``num_workers`` ``spawn``-ed worker processes that host groups of env blocks.

    :meth:`add_group` places one block per worker over a new shared-memory segment and
    returns a :class:`WorkerGroup`, the handle a vector env steps and calls; training and
    evaluation envs can so share one set of processes. Any failure (a worker that died, an
    exception inside an env, no answer within ``timeout_s``) shuts the whole pool down and
    raises :class:`EnvError`; the pool is unusable afterwards.
    """

    def __init__(self, num_workers: int, timeout_s: float = 300.0) -> None:
        if num_workers < 1:
            raise EnvError(f"num_workers must be >= 1, got {num_workers}")
        self.timeout_s = timeout_s
        context = mp.get_context("spawn")
        self._conns: list[Connection] = []
        self._processes: list[mp.process.BaseProcess] = []
        self._segments: list[SharedArrays] = []
        self._next_group = 0
        child_ends = []
        for index in range(num_workers):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=worker_main, args=(child_end,),
                                      name=f"mtrl-env-worker-{index}", daemon=True)
            self._conns.append(parent_end)
            self._processes.append(process)
            child_ends.append(child_end)
        self._finalizer = weakref.finalize(
            self, _shutdown, self._processes, self._conns, self._segments
        )
        with _environ(_SINGLE_THREAD_ENV):
            for process in self._processes:
                process.start()
        for child_end in child_ends:  # so that a dead worker reads as EOF on our end
            child_end.close()
        self._pending: set[int] = set()

    @property
    def num_workers(self) -> int:
        return len(self._processes)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers."""
        return [process.pid for process in self._processes if process.pid is not None]

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def add_group(self, factories: Sequence[BlockFactory], ranges: Sequence[tuple[int, int]],
                  layout: Layout) -> WorkerGroup:
        """Build block ``k`` (``factories[k]``, envs ``ranges[k]``) in worker ``k`` over a new
        segment with ``layout``. Returns at once (the blocks build in the background); the
        group's first :meth:`WorkerGroup.wait` collects the "ready" replies."""
        if not 0 < len(factories) <= self.num_workers or len(factories) != len(ranges):
            raise EnvError(f"need 1..{self.num_workers} blocks with one range each, got "
                           f"{len(factories)} blocks and {len(ranges)} ranges")
        if self._next_group > 255:
            raise EnvError("too many env groups on one worker pool")
        group, self._next_group = self._next_group, self._next_group + 1
        shared = SharedArrays(layout)
        self._segments.append(shared)
        try:
            self._send([_ADD + pickle.dumps((group, shared.name, dict(layout), factory))
                        for factory in factories])
        except BaseException:
            self._release(shared)
            raise
        return WorkerGroup(self, group, ranges, shared)

    def send(self, messages: Sequence[bytes]) -> None:
        """Send ``messages[k]`` to worker ``k`` (the first ``len(messages)`` workers)."""
        self._send(messages)

    def wait(self) -> list[Any]:
        """Wait for every worker's reply to the last command; returns the per-worker results
        (``None`` for workers that were not asked)."""
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

    def drop_group(self, group: WorkerGroup) -> None:
        """Close a group's blocks in the workers (if the pool is still up) and free its memory."""
        if not self.closed and not self._pending:
            with contextlib.suppress(EnvError):
                self._send([_DROP + bytes([group.index])] * len(group.ranges))
                self.wait()
        self._release(group.shared)

    def close(self) -> None:
        """Shut the workers down and free all shared memory. Idempotent."""
        self._pending.clear()
        self._finalizer()

    def _release(self, shared: SharedArrays) -> None:
        if shared in self._segments:
            self._segments.remove(shared)
        shared.close()

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
        return f"env worker {k} (pid {self._processes[k].pid})"

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


class WorkerGroup:
    """One vector env's blocks inside a :class:`WorkerPool`: block ``k`` (envs ``ranges[k]``)
    lives in worker ``k``; ``arrays`` are the group's shared arrays.

    ``owns_pool``: :meth:`close` shuts the whole pool down (the env that made the pool);
    otherwise it only removes this group's blocks, leaving the workers to their other groups.
    """

    def __init__(self, pool: WorkerPool, index: int, ranges: Sequence[tuple[int, int]],
                 shared: SharedArrays) -> None:
        self.pool = pool
        self.index = index
        self.ranges = list(ranges)
        self.shared = shared
        self.arrays = shared.arrays
        self.owns_pool = False
        self._step = _STEP + bytes([index])
        self._dropped = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers this group's blocks live in."""
        return self.pool.pids[: len(self.ranges)]

    @property
    def closed(self) -> bool:
        return self._dropped or self.pool.closed

    def send_step(self) -> None:
        """Tell every worker of the group to step its block (the hot path: two bytes each)."""
        self._check_open()
        self.pool.send([self._step] * len(self.ranges))

    def send_call(self, method: str, args: Sequence[tuple]) -> None:
        """Ask worker ``k`` to run ``block.method(*args[k])``."""
        self._check_open()
        self.pool.send([_CALL + pickle.dumps((self.index, method, a)) for a in args])

    def call(self, method: str, args: Sequence[tuple]) -> list[Any]:
        """:meth:`send_call` then :meth:`wait`."""
        self.send_call(method, args)
        return self.wait()

    def wait(self) -> list[Any]:
        """Wait for the replies to the group's last command; returns the per-block results."""
        self._check_open()
        return self.pool.wait()[: len(self.ranges)]

    def close(self) -> None:
        """Remove the group (or, if it owns the pool, shut the pool down). Idempotent."""
        if self.owns_pool:
            self.pool.close()
        elif not self._dropped:
            self.pool.drop_group(self)
        self._dropped = True

    def _check_open(self) -> None:
        if self.closed:
            raise EnvError("the environment is closed")


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
