"""Files written atomically: a reader, or a crash, sees the old file or the new one, not half."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO, Callable


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold SIGINT until the block ends, then deliver it to the handler it would have reached.

    A KeyboardInterrupt can land on any bytecode: between mkstemp's open and the `try` that owns
    the temporary file, or inside the cleanup that would remove it, and leave a stray `.tmp` beside
    the checkpoint. A write is short, so Ctrl-C waits for it. Only the main thread gets Python's
    signal handlers (and only it may set them); elsewhere there is nothing to hold.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or threading.current_thread() is not threading.main_thread():
        # None: a handler installed outside Python, which signal.signal could not put back
        yield
        return
    held = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> str:
    """write(f) into a temporary sibling file, fsync it, rename it over `path`, fsync the folder.

    On any error the temporary file is removed and `path` keeps its old contents. Ctrl-C during the
    write is held until the file is in place, then raised. Returns the path.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    with _ctrl_c_held():
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder
            )
        except OSError as e:
            # a missing or unwritable folder: named by the file asked for, not the temporary one
            raise type(e)(e.errno, e.strerror, path) from None
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
