"""Running a batch of ops in one transaction (`_BatchRunner`), for any backend's writer core.

Owns the batch policy: the whole batch in one transaction; if it fails, rolled back and replayed
one op per transaction so one bad request cannot sink its neighbours; consecutive intakes share
one executemany; the writer's memory of in-flight messages dropped at any rollback and trimmed
after each COMMIT. Never does: open connections or know a dialect (the core subclass provides
`_connection`, `_begin`, `_commit`, `_rollback`, and which errors are worth a retry).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gateway.store.message_ops import _insert_messages
from gateway.store.transaction import _CarrierMap, _Connection, _LiveMap, _Tx
from gateway.store.writer import Op, Outcomes


class _BatchRunner:
    """The part of a writer core that runs batches; lives where the writer runs."""

    # Transactions an op gets when the engine aborts one for a conflict with another writer
    # (a deadlock between two nodes, say): the op is a function of the database, so running it
    # again is safe.
    ATTEMPTS: ClassVar[int] = 1

    live: _LiveMap
    carriers: _CarrierMap
    live_messages: int

    def _connection(self) -> _Connection:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        """Roll back the open transaction, if one is open."""
        raise NotImplementedError

    def _prefetch(self, tx: _Tx, batch: list[Op]) -> None:
        """Read into `tx.live` what the batch's ops will read, before they run (a backend whose
        reads are round trips reads them together). Default: nothing; the ops read on demand."""

    def _retryable(self, exc: Exception) -> bool:
        """Whether an op that failed with `exc` may succeed in a transaction of its own."""
        return False

    def run_batch(self, batch: list[Op]) -> Outcomes:
        """The whole batch in one transaction, or op by op if one fails.

        Returns each op's (ok, result or exception) and the number of commits made.
        """
        tx = _Tx(self._connection(), self.live, self.carriers)
        self._begin()
        self._prefetch(tx, batch)
        try:
            results: list[tuple[bool, Any]] = []
            start = 0
            while start < len(batch):
                op, args = batch[start]
                if op is not _insert_messages:
                    results.append((True, op(tx, *args)))
                    start += 1
                    continue
                end = start
                rows: list[tuple[Any, ...]] = []
                history: list[tuple[Any, ...]] = []
                while end < len(batch) and batch[end][0] is _insert_messages:
                    rows += batch[end][1][0]
                    history += batch[end][1][1]
                    end += 1
                _insert_messages(tx, rows, history)
                results += [(True, None)] * (end - start)
                start = end
            tx.flush()
            self._commit()
            self._forget(tx.finished)
            return results, 1
        except Exception as exc:
            self.live.clear()  # it holds what the rolled-back ops did
            self.carriers.clear()
            self._rollback()
            if len(batch) == 1 and not self._retryable(exc):
                raise
        outcomes: list[tuple[bool, Any]] = []
        commits = 0
        for op, args in batch:
            for attempt in range(1, self.ATTEMPTS + 1):
                tx = _Tx(self._connection(), self.live, self.carriers)
                self._begin()
                self._prefetch(tx, [(op, args)])
                try:
                    value = op(tx, *args)
                    tx.flush()
                    self._commit()
                except Exception as exc:
                    self.live.clear()
                    self.carriers.clear()
                    self._rollback()
                    if attempt < self.ATTEMPTS and self._retryable(exc):
                        continue
                    outcomes.append((False, exc))
                else:
                    commits += 1
                    self._forget(tx.finished)
                    outcomes.append((True, value))
                break
        return outcomes, commits

    def _forget(self, finished: list[str]) -> None:
        """After COMMIT: drop finished messages, and the oldest ones beyond `live_messages`."""
        live = self.live
        for message_id in finished:
            self._forget_one(message_id, live.pop(message_id, None))
        while len(live) > self.live_messages:
            message_id = next(iter(live))
            self._forget_one(message_id, live.pop(message_id))

    def _forget_one(
        self, message_id: str, entry: tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]] | None
    ) -> None:
        if entry is None:
            return
        for segment_row in entry[1]:
            key = (segment_row[4] or "", segment_row[5] or "")
            if self.carriers.get(key) == (message_id, segment_row[1]):
                del self.carriers[key]
