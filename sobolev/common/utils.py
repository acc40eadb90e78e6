"""Small helpers: device choice, thread pinning, atomic file writes."""

from __future__ import annotations

import json
import os
import reprlib
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from tqdm import tqdm

_SHORT = reprlib.Repr()  # (keyword arguments need Python 3.12)
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 3, 6, 8, 8, 8
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 80, 40, 80
MAX_SHOWN = 200  # characters of a value in a message: enough to recognise it, never the whole of a huge one


def short(value: Any) -> str:
    """``repr(value)`` cut to a readable length and depth (messages never embed a huge or deep value whole)."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes CUDA when available, else the CPU; anything else is used as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def progress_bar(iterable: Iterable, desc: str, progress: bool | TextIO) -> tqdm:
    """A tqdm bar; ``progress`` is a flag or a stream. A stream such as ``sys.__stderr__`` keeps
    bars out of notebooks executed by papermill while the terminal shows them."""
    stream = None if isinstance(progress, bool) else progress
    return tqdm(iterable, desc=desc, disable=not progress, file=stream, mininterval=2.0)


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads (0 keeps the default). CPU results depend on it."""
    if threads:
        torch.set_num_threads(threads)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` only if the block
    succeeds, removed otherwise. Files written this way are never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600 files; results are meant to be read by everyone (the umask applies).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never half-written."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_safe(x: Any) -> Any:
    """``x`` with NumPy scalars made Python numbers and non-finite floats made ``None``, through dicts
    (keys as strings) and lists: valid JSON, as ``dvc metrics`` needs (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def atomic_write_json(path: str | Path, data: Any) -> None:
    """``data`` as valid JSON (:func:`json_safe`: NaN and infinities become ``null``), written atomically."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` via a temporary file and a rename: never half-written."""
    # Through a file object: torch names the archive's inner folder after a *path*'s stem,
    # which would put the random temporary name into the bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
