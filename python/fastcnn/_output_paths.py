"""Checks that the command line runs on its output options before the long work starts.

`fastcnn train --save`, `--history`, `--plot` and `fastcnn bench --json`, `--plot` write their
files at the end (or after each epoch); a folder that does not exist, or a missing matplotlib, would
otherwise surface only after the training or timing had run. Each check raises ValueError naming
the option.
"""

from __future__ import annotations

import os

from fastcnn.viz import INSTALL_HINT


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_file_writable(path: str, option: str) -> None:
    """`path` can be created or replaced: its folder exists and is writable, and it is no folder."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ValueError(f"{option}: {path} is a folder, expected a file name")
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write {path}: the folder {folder} is not writable")


def check_folder_writable(path: str, option: str) -> None:
    """`path` is a writable folder, or can be created as one (with its missing parents)."""
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ValueError(f"{option}: {path} is a file, expected a folder")
    existing = _nearest_existing(full)
    if not os.path.isdir(existing):
        raise ValueError(f"{option}: cannot create {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write into {path}: {existing} is not writable")


def check_matplotlib(option: str) -> None:
    """matplotlib, which drawing needs, is importable."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{option} needs matplotlib, which is not installed: {INSTALL_HINT} "
            f"(or leave out {option})"
        ) from None
