"""Where a store's one writer runs: on a thread of this process, or in a process of its own.

Owns the hop between the event loop and the writer: a queue and a thread, or a socket pair, a
child process and pickles. Never does: SQL, status rules or batching policy; those belong to
the store and its core (`gateway.store.sqlite`), which this module runs without looking inside.

The core is any object with `open()`, `run_batch(ops)` and `close()` (`WriterCore`). An op is a
module-level function of the open transaction and plain arguments, so the same op runs on the
writer thread as a call, or in the writer process after a pickle round trip (a module-level
function pickles as its name).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copyreg
import dataclasses
import functools
import gc
import io
import multiprocessing
import multiprocessing.process
import multiprocessing.util  # first, so that its exit handler runs after ours (see below)
import operator
import pickle
import queue
import signal
import socket
import struct
import threading
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from dlr.aggregate import SegmentState, SegmentUpdate
from dlr.status import Advance, StatusEvent
from gateway.messages import Message, Segment
from gateway.store.base import StatusChange, StoreError

T = TypeVar("T")
WriterPlacement = Literal["thread", "process", "inline"]
Op = tuple[Callable[..., Any], tuple[Any, ...]]
# Each op's (ok, result or exception), and the number of commits made.
Outcomes = tuple[list[tuple[bool, Any]], int]


class WriterCore(Protocol):
    """What a writer runs: it owns the connection and lives where the writer runs."""

    path: Path

    def open(self) -> None: ...

    def run_batch(self, batch: list[Op]) -> Outcomes: ...

    def close(self) -> None: ...


class ThreadWriter:
    """Runs the core on one thread of this process: no copying, but its Python work (about
    half of a write; SQLite itself releases the GIL) competes with the event loop for the GIL.

    Cheaper per batch than `run_in_executor` (no concurrent.futures.Future to chain to an
    asyncio one): a job is one queue put, and its answer one `call_soon_threadsafe`."""

    depth = 1  # batches out at once: more would only queue behind the GIL

    def __init__(self, core: WriterCore) -> None:
        self._core = core
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def start(self) -> None:
        try:
            await self._submit(self._core.open)
        except BaseException:
            await self.stop()
            raise

    def run(self, batch: list[Op]) -> asyncio.Future[Outcomes]:
        return self._submit(functools.partial(self._core.run_batch, batch))

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # closing is best effort; the thread must end
            await self._submit(self._core.close)
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    def _submit(self, job: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((job, future))
        return future

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            try:
                result = job()
            except BaseException as exc:  # handed to the awaiting coroutine, raised there
                self._answer(_fail_future, future, exc)
            else:
                self._answer(_resolve_future, future, result)

    def _answer(self, how: Callable[[asyncio.Future[Any], Any], None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits any more
            self._loop.call_soon_threadsafe(how, *args)


class InlineWriter:
    """Runs the core on the event loop's own thread: a batch commits inside the turn that
    sends it. No hop at all (no thread or process to wake, no pickles), at the price of the
    loop doing the writer's work and being busy for the length of each commit.
    On a shared machine every hop is a wait for a CPU, and this placement has none."""

    depth = 1

    def __init__(self, core: WriterCore) -> None:
        self._core = core

    async def start(self) -> None:
        self._core.open()

    def run(self, batch: list[Op]) -> asyncio.Future[Outcomes]:
        future: asyncio.Future[Outcomes] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(self._core.run_batch(batch))
        except Exception as exc:  # the commit itself failed (disk full, I/O error)
            future.set_exception(exc)
        return future

    async def stop(self) -> None:
        self._core.close()


def _resolve_future(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


_FRAME = struct.Struct("!I")


def _positional_reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle a slots dataclass as `cls(*fields)`: half the bytes and a third of the time of
    pickle's default for such classes (which stores each slot by name)."""
    fields = dataclasses.fields(cls)
    if any(not f.init or f.kw_only for f in fields):
        raise TypeError(f"{cls.__name__} cannot be rebuilt from its fields in order")
    values = operator.attrgetter(*(f.name for f in fields))
    return lambda obj: (cls, values(obj))


# What goes over the writer process's socket: ops' arguments and results.
_PICKLE_TABLE = copyreg.dispatch_table.copy()
for _cls in (
    Message,
    Segment,
    StatusChange,
    StatusEvent,
    Advance,
    SegmentState,
    SegmentUpdate,
):
    _PICKLE_TABLE[_cls] = _positional_reducer(_cls)


def dumps(obj: Any) -> bytes:
    """`pickle.dumps` as the writer process's socket uses it (`pickle.loads` reads it back)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _PICKLE_TABLE
    pickler.dump(obj)
    return buffer.getvalue()


# The sockets of the writer processes this process has started and not stopped yet.
_writer_channels: weakref.WeakSet[socket.socket] = weakref.WeakSet()


@atexit.register
def _release_writer_processes() -> None:
    """At interpreter exit, before multiprocessing joins its children (atexit runs in reverse
    order of registration, and this module registers after multiprocessing): a writer process
    still attached ends only when its socket closes, so close them all first."""
    for channel in list(_writer_channels):
        with contextlib.suppress(OSError):
            channel.close()


class ProcessWriter:
    """Runs the core in a child process, so its Python work uses a second CPU instead of
    competing with the event loop for the GIL. Batches go over a socket pair as pickles, a few
    microseconds a row each way: 10-20% more CPU per message in all, for a second core's worth
    of room (bench/RESULTS.md, third round).
    Two batches may be out at once: the child commits one while the next is on its way, and
    answers in order.

    The child is forked from multiprocessing's fork server (a clean, single-threaded process
    that has the store's modules imported), so starting one takes milliseconds, and it inherits
    neither this process's threads nor its open SQLite handles. It ignores SIGINT and SIGTERM
    and ends when its socket closes: when `stop` closes it, or when this process dies (even by
    kill -9), after finishing the batch in hand, so a commit is never cut in half by a signal.
    """

    depth = 2

    def __init__(self, core: WriterCore) -> None:
        self._core = core
        self.process: multiprocessing.process.BaseProcess | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._answers: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()  # one per batch out, oldest first
        self._broken: str | None = None
        self._stopping = False

    async def start(self) -> None:
        context = multiprocessing.get_context("forkserver")
        # Has effect until the fork server starts (once per process); '__main__' first, so the
        # server imports the main script once instead of every child doing it, then the core's
        # module (the ops it runs) and this one.
        context.set_forkserver_preload(["__main__", type(self._core).__module__, __name__])
        ours, theirs = socket.socketpair()
        try:
            self.process = context.Process(
                target=_writer_process_main,
                args=(theirs, self._core),
                name=f"tandem-store-writer:{self._core.path.name}",
                daemon=True,
            )
            await asyncio.get_running_loop().run_in_executor(None, self.process.start)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        _writer_channels.add(ours)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=2**26)
        try:
            ok, error = await self._read_answer()  # to opening the database
        except (OSError, EOFError, asyncio.IncompleteReadError):
            ok, error = False, StoreError(await self._ended())
        if not ok:
            await self.stop()
            raise error
        self._answers = asyncio.create_task(self._read_answers(), name="store-writer-answers")

    def run(self, batch: list[Op]) -> asyncio.Future[Outcomes]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._broken is not None or self._writer is None:
            future.set_exception(StoreError(self._broken or "store writer process stopped"))
            return future
        payload = dumps(batch)
        self._writer.write(_FRAME.pack(len(payload)) + payload)
        self._waiting.append(future)
        return future

    async def _read_answer(self) -> tuple[bool, Any]:
        reader = self._reader
        assert reader is not None
        size = _FRAME.unpack(await reader.readexactly(_FRAME.size))[0]
        answer: tuple[bool, Any] = pickle.loads(await reader.readexactly(size))
        return answer

    async def _read_answers(self) -> None:
        """Settle the batches out, in order, until the socket closes."""
        try:
            while True:
                ok, value = await self._read_answer()
                future = self._waiting.popleft()
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (OSError, EOFError, asyncio.IncompleteReadError):
            if self._stopping and not self._waiting:
                return
            self._broken = await self._ended()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(StoreError(self._broken))

    async def _ended(self) -> str:
        code = None
        if self.process is not None:  # its exit status follows the closed socket closely
            await asyncio.get_running_loop().run_in_executor(None, self.process.join, 2.0)
            code = self.process.exitcode
        return f"store writer process for {self._core.path} ended (exit code {code})"

    async def stop(self) -> None:
        self._stopping = True
        if self._writer is not None:
            self._writer.close()  # the child finishes the batches in hand, sees EOF, and ends
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._answers is not None:
            await self._answers
        process = self.process
        if process is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, process.join, 30)
            if process.exitcode is None:  # stuck (a disk that never answers): do not hang
                process.kill()
                await loop.run_in_executor(None, process.join)
        self._reader = self._writer = self.process = self._answers = None


def tune_collector() -> None:
    """The garbage collector's settings for Tandem's long-running processes (the daemon and its
    store writer): call once, after start-up.

    Every message allocates dozens of short-lived container objects, and with the default
    thresholds (700, 10, 10) full collections, which walk every long-lived object (queued
    messages, tables, imported modules), took a quarter of the daemon's CPU under load
    (bench/dlr.py) and a tenth of the writer's. Objects that live as long as the process are
    frozen out of its view, and the young generation is collected per 50,000 allocations
    instead of 700; reference counting still frees almost everything at once, only cycles
    wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _writer_process_main(channel: socket.socket, core: WriterCore) -> None:
    """The writer process: open the database, then answer batches until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stream = channel.makefile("rwb")

    def answer(ok: bool, value: Any) -> None:
        try:
            payload = dumps((ok, value))
        except Exception:  # an error object that does not pickle: send its text instead
            payload = pickle.dumps((False, StoreError(f"{type(value).__name__}: {value}")))
        stream.write(_FRAME.pack(len(payload)) + payload)
        stream.flush()

    try:
        core.open()
    except Exception as exc:
        answer(False, exc)
        return
    tune_collector()  # what the fork server imported lives as long as this process
    answer(True, None)
    try:
        while header := stream.read(_FRAME.size):
            if len(header) < _FRAME.size:
                break
            batch: list[Op] = pickle.loads(stream.read(_FRAME.unpack(header)[0]))
            try:
                outcome: tuple[bool, Any] = (True, core.run_batch(batch))
            except Exception as exc:  # the commit itself failed (disk full, I/O error)
                outcome = (False, exc)
            answer(*outcome)
    except (OSError, EOFError):
        pass  # the other end is gone: nobody is left to answer
    finally:
        core.close()
