"""Where a command line tool finds the daemon's state (the store, the data directory).

Owns `daemon_state_path`: the config's path made absolute, and the rule that a tool never
creates state where the daemon would not look. Relative paths in the config (the built-in
default's `data`) resolve against the working directory, as they do for `tandem run` (the
systemd unit runs it in /var/lib/tandem with its config in /etc/tandem); so a tool run from
another directory would otherwise open a new, empty store there, and the key it made would be
refused by the running daemon. An absolute path is where the config says the state is, so a
tool may create it there (before the daemon's first start, say).

Never does: open or create anything; callers do, with the path it returns.
"""

from __future__ import annotations

import os
from pathlib import Path


class StateNotFound(Exception):
    """A relative state path that does not exist from here; `str()` is one line naming it."""


def daemon_state_path(path: Path, what: str) -> Path:
    """`path` made absolute; a relative one must exist already (`what` names it: "store")."""
    absolute = Path(os.path.abspath(path))
    if path.is_absolute() or absolute.exists():
        return absolute
    raise StateNotFound(
        f"no {what} at {absolute}: the config's {path} is relative to the working directory; "
        "run this where `tandem run` runs (once it has started), or give --config a file "
        "whose data_dir is absolute"
    )
