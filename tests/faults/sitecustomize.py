"""Disk faults for the end-to-end tests, in every Python process of a test that puts this
folder on PYTHONPATH (tests/test_run_dir_guarantees.py). Off unless RASP_FAULT_DIR is set.

Writes to files below RASP_FAULT_DIR whose name matches the glob RASP_FAULT_AT (a
checkpoint's temporary file ``.rasp_hydra-last.pt.PID.tmp`` matches ``*last.pt*``) pass for
the first RASP_FAULT_SKIP of them; the next one raises OSError(ENOSPC), and so does every
write below RASP_FAULT_DIR after it (a full disk, which shutil.disk_usage then reports), or
only that one with RASP_FAULT_ONCE=1 (an I/O error). RASP_FAULT_FULL=1: full from the start. The
file is opened as usual (a temporary file appears, as on a real disk); its first ``write``
fails.
"""

import builtins
import errno
import fnmatch
import os

DIR = os.environ.get("RASP_FAULT_DIR")


class _Full:
    """An open file whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


if DIR:
    _open = builtins.open
    _skip = [int(os.environ.get("RASP_FAULT_SKIP", "0"))]
    _state = {"full": os.environ.get("RASP_FAULT_FULL") == "1", "done": False}

    def _fails(path) -> bool:
        path = os.path.abspath(os.fsdecode(path))
        if not path.startswith(os.path.abspath(DIR) + os.sep):
            return False
        if _state["full"]:
            return True
        if _state["done"] or not fnmatch.fnmatch(os.path.basename(path),
                                                 os.environ.get("RASP_FAULT_AT", "*")):
            return False
        if _skip[0] > 0:
            _skip[0] -= 1
            return False
        _state["done"] = True
        _state["full"] = os.environ.get("RASP_FAULT_ONCE") != "1"
        return True

    def open(file, mode="r", *args, **kwargs):  # noqa: A001 - the builtin, with faults
        f = _open(file, mode, *args, **kwargs)
        writes = any(c in mode for c in "wax+")
        if writes and isinstance(file, (str, bytes, os.PathLike)) and _fails(file):
            return _Full(f)
        return f

    builtins.open = open

    import shutil

    _disk_usage = shutil.disk_usage

    def disk_usage(path):
        usage = _disk_usage(path)
        inside = os.path.abspath(path).startswith(os.path.abspath(DIR))
        return usage._replace(free=0) if inside and _state["full"] else usage

    shutil.disk_usage = disk_usage
