"""Reading a model file for an importer: one place that turns OS errors into ImportModelError."""
from __future__ import annotations

import os

from edgelstm.errors import EdgeLSTMError, ImportModelError


def read_model_file(path) -> tuple[bytes, str]:
    """(file bytes, the path as text for messages); ``bytes`` input passes through as ``"<bytes>"``."""
    if isinstance(path, (bytes, bytearray)):
        return bytes(path), "<bytes>"
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            return f.read(), where
    except OSError as e:
        raise ImportModelError(f"{where}: cannot read: {e.strerror or e}") from None


def run_isolated(fn, args: tuple, *, timeout: float, where: str):
    """``fn(*args)`` in a forked child process, its result sent back (it must pickle).  For readers built on
    native libraries that can hang or crash on a corrupt file (libhdf5 does both): a hang past ``timeout``
    seconds, a dead child and any exception become ``ImportModelError``; an ``EdgeLSTMError`` raised by ``fn``
    comes back as itself.  Without fork (not POSIX) ``fn`` runs in-process."""
    import multiprocessing as mp
    import pickle
    try:
        ctx = mp.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        return fn(*args)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise ImportModelError(f"{where}: the reader did not finish within {timeout:g} s (a corrupt file?)")
        status, payload = parent.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        proc.join(1.0)
        raise ImportModelError(f"{where}: the reader died on this file (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()
    if status == "ok":
        return payload
    raise payload if isinstance(payload, EdgeLSTMError) else ImportModelError(f"{where}: {payload}")


def _child(fn, args, conn):
    import faulthandler
    faulthandler.disable()  # a native crash here is reported by the parent, not dumped on the user's terminal
    try:
        try:
            out = ("ok", fn(*args))
        except EdgeLSTMError as e:
            out = ("error", e)
        except BaseException as e:  # noqa: BLE001 - reported to the parent as an import error
            out = ("error", f"cannot read the file ({type(e).__name__}: {str(e)[:300]})")
        conn.send(out)
    finally:
        conn.close()
        os._exit(0)  # no atexit handlers or inherited buffers flushed twice in the forked child
