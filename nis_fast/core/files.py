"""Atomic file writes: a file is either written whole or left as it was."""
from __future__ import annotations

import os
import tempfile


def _read_umask() -> int:
    umask = os.umask(0)  # the only portable way to read it; done once, at import, before any threads write
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _new_file_mode(path) -> int:
    """The mode a plain open(path, "w") would give: the existing file's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def atomic_write(path, write):
    """Call write(tmp_path) on a temp file beside `path`, then os.replace it into place.
    On any failure the temp file is removed and `path` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
