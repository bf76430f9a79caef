"""Files only the daemon's user may read: the data directory (0700), the store's files and the
key files (0600), whatever the umask the daemon was started with.

Owns `private_data_dir`, `private_dir`, `private_file` and `read_or_create_key`. The data
directory holds OTP messages in flight, callback secrets, the keys of the store and the OTP
pepper: a local user who can read it can approve codes and forge callbacks, so modes are set
explicitly, not left to the umask, and a directory or file found looser (made by an older
version, or by hand) is tightened, with a log line saying so.

Never does: decide what goes into those files, or change the owner of anything.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("tandem.files")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (missing parents with the usual modes) as 0700, or tighten it to 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_data_dir(path: Path) -> Path:
    """`private_dir`, and every file already in it 0600 (an older install's, or one copied in)."""
    private_dir(path)
    for entry in path.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, FILE_MODE)
    return path


def private_file(path: Path, *, create: bool = False) -> None:
    """Make `path` 0600 (created empty when missing and `create`; else left missing)."""
    if create:
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            pass
        else:
            os.fchmod(descriptor, FILE_MODE)  # the umask may have taken bits off the owner too
            os.close(descriptor)
    try:
        _tighten(path, FILE_MODE)
    except FileNotFoundError:
        if create:
            raise


def read_or_create_key(path: Path, size: int = 32) -> bytes:
    """The key in `path` (as it is: its user checks it), or `size` new random bytes written
    there (0600) on first use.

    Two processes starting at once (the daemon and a CLI command) end up with the same key: it
    is written to a temporary file and linked into place, so nobody reads a half-written one."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        private_dir(path.parent)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(descriptor, "wb") as file:
                os.fchmod(file.fileno(), FILE_MODE)
                file.write(secrets.token_bytes(size))
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:  # another process was first: its key is the key
                pass
        finally:
            os.unlink(temporary)
        key = path.read_bytes()
    _tighten(path, FILE_MODE)
    return key


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current == mode:
        return
    try:
        os.chmod(path, mode)
    except PermissionError:  # another user's file: say so, the owner must fix it
        log.warning("%s has mode %04o, not %04o, and is not ours to change", path, current, mode)
        return
    if current & 0o077:
        log.warning("%s was readable by others (mode %04o); it is now %04o", path, current, mode)
