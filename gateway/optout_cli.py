"""`tandem optouts list|add|remove|import|export`: the opt-out list from the command line.

Works on the daemon's store directly (SQLite WAL lets the CLI in beside a running daemon, which
applies what the CLI changed within `[optouts] sync_seconds`), found as `gateway.state_paths`
says and named on stderr. Every change is audited (`cli`, or `import` with the file's name).

CSV (import and export): UTF-8 with a header row; columns `number,scope,sender,group,reason`
(export adds `created_at,via,keyword,source`, which import ignores). `scope` is `sender`,
`group` or `all`; left empty it follows from the row (a sender: sender, a group: group, neither:
all). Import is idempotent: a row already in force is counted as taken and changes nothing; a
bad row is refused with its line number and reason, and the good rows are still taken.

Never does: daemon logic. Operator mistakes end as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.cli_store import daemon_store_path, with_daemon_store
from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail
from gateway.config import ConfigError, TandemConfig, load_config
from gateway.optouts.from_config import sender_groups
from gateway.optouts.registry import OptOutRegistry
from gateway.optouts.senders import resolve_number, sender_key
from gateway.state_paths import StateNotFound
from gateway.store.base import (
    OptOutAction,
    OptOutChange,
    OptOutEntry,
    OptOutScope,
    OptOutStore,
    OptOutVia,
)
from routing import InvalidNumber, NumberResolver

IMPORT_COLUMNS = ("number", "scope", "sender", "group", "reason")
EXPORT_COLUMNS = (*IMPORT_COLUMNS, "created_at", "via", "keyword", "source")
IMPORT_BATCH = 5000  # rows per store write
EXPORT_PAGE = 10_000


def add_optouts_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="optouts_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="opt-outs in force")
    _common(listing)
    listing.add_argument("--number", default=None)
    listing.add_argument("--sender", default=None)
    listing.add_argument("--group", default=None)
    listing.add_argument("--scope", choices=[s.value for s in OptOutScope], default=None)
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    listing.set_defaults(handler=_list)

    add = actions.add_parser("add", help="stop messages to a number")
    _common(add)
    add.add_argument("number")
    _scope_arguments(add)
    add.add_argument("--reason", default="")
    add.set_defaults(handler=_add)

    remove = actions.add_parser(
        "remove", help="remove a number's opt-outs (the one named, or all of them)"
    )
    _common(remove)
    remove.add_argument("number")
    _scope_arguments(remove)
    remove.add_argument("--reason", default="")
    remove.set_defaults(handler=_remove)

    load = actions.add_parser("import", help="take opt-outs from a CSV file (idempotent)")
    _common(load)
    load.add_argument("file", type=Path)
    load.set_defaults(handler=_import)

    dump = actions.add_parser("export", help="write the opt-outs in force to a CSV file")
    _common(dump)
    dump.add_argument("file", help="a path, or - for stdout")
    dump.set_defaults(handler=_export)


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sender", default=None, help="from this sender (our number or name)")
    which.add_argument("--group", default=None, help="from this [[sender_groups]] group")
    which.add_argument("--all", action="store_true", help="from every sender")


@dataclass
class _Context:
    config: TandemConfig
    path: Path
    numbers: NumberResolver

    @classmethod
    def of(cls, args: argparse.Namespace) -> _Context:
        config = load_config(args.config)
        return cls(config, daemon_store_path(config), NumberResolver(config.numbering))

    def registry(self, store: OptOutStore) -> OptOutRegistry:
        return OptOutRegistry(store, sender_groups(self.config.sender_groups), origin=_origin())

    def run(self, work: Any) -> Any:
        return asyncio.run(with_daemon_store(self.config, self.path, work))


def _origin() -> str:
    import os

    return f"cli:{os.getpid()}"


def _context(args: argparse.Namespace) -> _Context | int:
    try:
        return _Context.of(args)
    except (ConfigError, StateNotFound) as exc:
        return fail(str(exc))


def _scope_of(context: _Context, args: argparse.Namespace) -> tuple[OptOutScope, str] | str:
    """The scope the arguments name, or a reason they are wrong."""
    if args.sender is not None:
        return OptOutScope.SENDER, sender_key(args.sender)
    if args.group is not None:
        if args.group not in {g.name for g in context.config.sender_groups}:
            return f"no sender group is named {args.group!r}"
        return OptOutScope.GROUP, args.group
    return OptOutScope.ALL, ""


def _when(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(args: argparse.Namespace) -> int:
    context = _context(args)
    if isinstance(context, int):
        return context
    number = None
    if args.number is not None:
        try:
            number = resolve_number(context.numbers, args.number)
        except InvalidNumber as exc:
            return fail(f"optouts list: --number: {exc.reason}")
    scope = OptOutScope(args.scope) if args.scope is not None else None
    target = None
    if args.sender is not None:
        scope, target = OptOutScope.SENDER, sender_key(args.sender)
    elif args.group is not None:
        scope, target = OptOutScope.GROUP, args.group

    async def work(store: OptOutStore) -> list[OptOutEntry]:
        return await store.list_optouts(
            number=number, scope=scope, target=target, limit=max(args.limit, 1)
        )

    entries: list[OptOutEntry] = context.run(work)
    print(f"{'NUMBER':<17} {'SCOPE':<7} {'SENDER/GROUP':<16} {'SINCE':<21} {'VIA':<8} SOURCE")
    for e in entries:
        print(
            f"+{e.number:<16} {e.scope.value:<7} {e.target or '-':<16} "
            f"{_when(e.created_at):<21} {e.via.value:<8} {e.source or '-'}"
        )
    if not entries:
        print("no opt-outs", file=sys.stderr)
    return EXIT_OK


def _number_and_scope(
    args: argparse.Namespace, command: str
) -> tuple[_Context, str, tuple[OptOutScope, str]] | int:
    """What `optouts add|remove` work on: the context, the number and the scope; or the exit
    code of a refusal already said."""
    context = _context(args)
    if isinstance(context, int):
        return context
    try:
        number = resolve_number(context.numbers, args.number)
    except InvalidNumber as exc:
        return fail(f"optouts {command}: {args.number}: {exc.reason}")
    scope = _scope_of(context, args)
    if isinstance(scope, str):
        return fail(f"optouts {command}: {scope}")
    return context, number, scope


def _add(args: argparse.Namespace) -> int:
    chosen = _number_and_scope(args, "add")
    if isinstance(chosen, int):
        return chosen
    context, number, scope = chosen
    if not (args.sender or args.group or args.all):
        return fail("optouts add: name --sender, --group or --all")

    async def work(store: OptOutStore) -> bool:
        registry = context.registry(store)
        outcome = await registry.opt_out(
            number,
            scope=scope[0],
            target=scope[1],
            via=OptOutVia.CLI,
            source="cli",
            reason=args.reason,
        )
        return outcome.any_changed

    changed = context.run(work)
    what = scope[0].value + (f" {scope[1]}" if scope[1] else "")
    print(f"+{number}: opted out ({what}){'' if changed else ', already in force'}")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    chosen = _number_and_scope(args, "remove")
    if isinstance(chosen, int):
        return chosen
    context, number, scope = chosen
    named = args.sender or args.group or args.all

    async def work(store: OptOutStore) -> list[tuple[OptOutScope, str]]:
        registry = context.registry(store)
        await registry.refresh(number)
        outcome = await registry.opt_in(
            number,
            scope=scope[0] if named else None,
            target=scope[1],
            via=OptOutVia.CLI,
            source="cli",
            reason=args.reason,
        )
        return [s for s, did in zip(outcome.scopes, outcome.changed) if did]

    removed = context.run(work)
    if not removed:
        print(f"+{number}: no such opt-out", file=sys.stderr)
        return EXIT_FAILURE
    for each_scope, target in removed:
        print(f"+{number}: removed ({each_scope.value}{f' {target}' if target else ''})")
    return EXIT_OK


# --- CSV ------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    taken: int = 0
    new: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def parse_rows(
    text: str, numbers: NumberResolver, groups: set[str]
) -> Iterator[tuple[int, tuple[str, OptOutScope, str, str] | str]]:
    """(line number, (number, scope, target, reason) or the reason the row is refused)."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "number" not in header:
        yield 1, "the header has no 'number' column"
        return
    for row in reader:
        line = reader.line_num
        raw = (row.get("number") or "").strip()
        if not raw:
            yield line, "no number"
            continue
        try:
            number = resolve_number(numbers, raw)
        except InvalidNumber as exc:
            yield line, f"{raw}: {exc.reason}"
            continue
        sender = (row.get("sender") or "").strip()
        group = (row.get("group") or "").strip()
        scope_text = (row.get("scope") or "").strip().lower()
        if not scope_text:
            scope_text = "sender" if sender else "group" if group else "all"
        try:
            scope = OptOutScope(scope_text)
        except ValueError:
            yield line, f"scope {scope_text!r} is not sender, group or all"
            continue
        if scope is OptOutScope.SENDER:
            if not sender or group:
                yield line, "scope sender needs a sender (and no group)"
                continue
            target = sender_key(sender)
        elif scope is OptOutScope.GROUP:
            if not group or sender:
                yield line, "scope group needs a group (and no sender)"
                continue
            if group not in groups:
                yield line, f"no sender group is named {group!r}"
                continue
            target = group
        else:
            if sender or group:
                yield line, "scope all names no sender or group"
                continue
            target = ""
        yield line, (number, scope, target, (row.get("reason") or "").strip()[:200])


def _import(args: argparse.Namespace) -> int:
    context = _context(args)
    if isinstance(context, int):
        return context
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"optouts import: cannot read {args.file}: {exc}")
    groups = {g.name for g in context.config.sender_groups}
    report = ImportReport()
    good: list[tuple[str, OptOutScope, str, str]] = []
    for line, parsed in parse_rows(text, context.numbers, groups):
        if isinstance(parsed, str):
            report.refused.append((line, parsed))
        else:
            good.append(parsed)
    source = f"import:{args.file.name}"

    async def work(store: OptOutStore) -> None:
        registry = context.registry(store)
        now = registry.clock()
        for start in range(0, len(good), IMPORT_BATCH):
            changes = [
                OptOutChange(
                    OptOutAction.OPT_OUT,
                    number,
                    scope,
                    target,
                    now,
                    OptOutVia.IMPORT,
                    source=source,
                    reason=reason,
                )
                for number, scope, target, reason in good[start : start + IMPORT_BATCH]
            ]
            changed = await registry.apply(changes)
            report.taken += len(changes)
            report.new += sum(changed)

    if good:
        context.run(work)
    for line, reason in report.refused:
        print(f"{args.file}:{line}: refused: {reason}", file=sys.stderr)
    print(
        f"taken: {report.taken} ({report.new} new, {report.taken - report.new} already in force)"
        f"; refused: {len(report.refused)}"
    )
    return EXIT_OK if not report.refused else EXIT_FAILURE


def _export(args: argparse.Namespace) -> int:
    context = _context(args)
    if isinstance(context, int):
        return context

    async def work(store: OptOutStore) -> int:
        out = sys.stdout if args.file == "-" else open(args.file, "w", encoding="utf-8", newline="")  # noqa: SIM115
        try:
            writer = csv.writer(out)
            writer.writerow(EXPORT_COLUMNS)
            count = 0
            after: tuple[str, str, str] | None = None
            while True:
                page = await store.list_optouts(after=after, limit=EXPORT_PAGE)
                for e in page:
                    writer.writerow(
                        (
                            "+" + e.number,
                            e.scope.value,
                            e.target if e.scope is OptOutScope.SENDER else "",
                            e.target if e.scope is OptOutScope.GROUP else "",
                            e.reason,
                            _when(e.created_at),
                            e.via.value,
                            e.keyword or "",
                            e.source,
                        )
                    )
                count += len(page)
                if len(page) < EXPORT_PAGE:
                    return count
                last = page[-1]
                after = (last.number, last.scope.value, last.target)
        finally:
            if out is not sys.stdout:
                out.close()

    try:
        count = context.run(work)
    except OSError as exc:
        return fail(f"optouts export: cannot write {args.file}: {exc}")
    print(f"exported: {count}", file=sys.stderr)
    return EXIT_OK
