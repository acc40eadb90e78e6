"""CIFAR-10 from the official python archive, without torchvision.

``data.dvc`` pins the archive (``data/cifar-10-python.tar.gz``) by its published MD5; a
user with internet fetches it with ``dvc update data.dvc`` (or downloads the URL below by
hand). :func:`load_cifar10` verifies the checksum and reads the pickled batches straight
from the tarball.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
DEFAULT_ARCHIVE = Path("data/cifar-10-python.tar.gz")
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_archive(path: str | Path = DEFAULT_ARCHIVE, md5: str = CIFAR10_MD5) -> Path:
    """Return ``path`` if it exists with the expected checksum; otherwise say how to fetch it."""
    path = Path(path)
    how = (
        f"fetch it with `dvc update data.dvc` (DVC downloads {CIFAR10_URL} to {DEFAULT_ARCHIVE}), "
        f"or download that URL by hand to {path}"
    )
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 archive not found at {path}: {how}")
    actual = md5sum(path)
    if actual != md5:
        raise ValueError(
            f"CIFAR-10 archive {path} has MD5 {actual}, expected {md5}: "
            f"it is corrupt or not the official archive; {how}"
        )
    return path


def load_cifar10(path: str | Path = DEFAULT_ARCHIVE, md5: str | None = CIFAR10_MD5) -> dict[str, tuple[Tensor, Tensor]]:
    """Read the archive into ``{"train": (x, y), "test": (x, y)}``.

    ``x`` is ``uint8 (N, 3, 32, 32)``, ``y`` is ``int64 (N,)`` (50 000 / 10 000 images in the
    real archive). ``md5=None`` skips the checksum (for test fixtures).
    """
    path = verify_archive(path, md5) if md5 is not None else Path(path)
    if not path.is_file():
        verify_archive(path)  # raises the helpful FileNotFoundError
    parts: dict[str, list[tuple[np.ndarray, list[int]]]] = {"train": [], "test": []}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            split = "train" if name in TRAIN_BATCHES else "test" if name == "test_batch" else None
            if split is None:
                continue
            f = tar.extractfile(member)
            assert f is not None
            batch = pickle.load(f, encoding="bytes")
            parts[split].append((batch[b"data"], batch[b"labels"]))
    out = {}
    for split, batches in parts.items():
        if not batches:
            raise ValueError(f"{path}: no {split} batches found; is this the CIFAR-10 python archive?")
        x = np.concatenate([b[0] for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[1]) for b in batches])
        out[split] = (torch.from_numpy(x), torch.from_numpy(y).long())
    return out
