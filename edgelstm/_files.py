"""The one way edgelstm writes a file: ``write_atomic``. Every writer (``el.save``, the exporters file by file,
the CLI's outputs, ``write_wav``, the bench reports) goes through it, so a crash, a kill or a full disk leaves
either the old file or the new one, never a torn one, and never a temp file; a symlink at the target is
replaced by the new file, never written through to what it points at.
"""
from __future__ import annotations

import os
import stat

from .errors import EdgeLSTMError

_TMP_PREFIX = ".elstm-tmp-"  # named temp files: .elstm-tmp-<pid>-<random>; only where O_TMPFILE is missing


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale_temps(folder: str) -> None:
    """Remove temp files that writers killed mid-save left behind (their pid is gone)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(_TMP_PREFIX):
            continue
        pid_text = name[len(_TMP_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


def _write_temp(folder: str, data: bytes, mode: int) -> str:
    """Write ``data`` to a new complete file in ``folder`` and return its (temp) name.

    Linux O_TMPFILE first: the file is anonymous until it is complete, so a writer killed mid-write leaves
    nothing behind.  Elsewhere (or where the filesystem refuses it) a named temp file carries our pid, so a
    later write cleans it up if we are killed (``_remove_stale_temps``)."""
    name = os.path.join(folder, f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}.tmp")
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, mode)
        except OSError:
            fd = -1
        if fd >= 0:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                try:
                    # a dir fd makes CPython call linkat(AT_SYMLINK_FOLLOW), which can name an O_TMPFILE file
                    dfd = os.open(folder, os.O_RDONLY)
                    try:
                        os.link(f"/proc/self/fd/{f.fileno()}", os.path.basename(name), dst_dir_fd=dfd,
                                follow_symlinks=True)
                    finally:
                        os.close(dfd)
                    return name
                except OSError:
                    pass  # no /proc, or a filesystem that refuses: fall back to a named temp file
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return name


def write_atomic(path, data: bytes, *, error: type = EdgeLSTMError) -> None:
    """Write ``data`` to ``path``: a complete temp file in the target's directory, then moved over the target
    (see the module docstring).  A missing directory, a directory at ``path``, a full disk or any other OS
    failure raises ``error`` (an ``EdgeLSTMError`` subclass, the caller's) naming the path; the old file is
    then untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise error(f"{path}: cannot write: directory {folder} does not exist")
    if os.path.isdir(path) and not os.path.islink(path):
        raise error(f"{path}: cannot write: it is a directory")
    try:  # keep an existing file's permissions (the link's own target is not ours to look at)
        st = os.lstat(path)
        mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o644
    except OSError:
        mode = 0o644
    _remove_stale_temps(folder)
    tmp = None
    try:
        tmp = _write_temp(folder, data, mode)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise error(f"{path}: cannot write: {e.strerror or e}") from None
        raise
    try:  # make the rename itself durable; not possible everywhere (e.g. Windows)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
