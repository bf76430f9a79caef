"""CPU time of processes and their descendants (Linux /proc), for the benches' cost figures.

A figure that other load on the machine does not distort the way wall-clock rates are. The
daemon's store writer runs as a descendant (a child of multiprocessing's fork server), so a
process's figure here includes the processes under it.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(*pids: int, exclude: tuple[int, ...] = ()) -> float:
    """CPU seconds used so far by `pids` and every process under them, leaving out the trees
    under `exclude` (a simulator this script started, say)."""
    stats = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    total, todo, skip = 0.0, list(pids), set(exclude)
    while todo:
        pid = todo.pop()
        stat = stats.get(pid)
        if pid in skip or stat is None:
            continue
        total += stat[1]
        todo += children.get(pid, [])
    return total
