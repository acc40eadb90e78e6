"""CIFAR-10 from the official python archive, without torchvision.

``data.dvc`` pins the archive (``data/cifar-10-python.tar.gz``) by its published MD5; a
user with internet fetches it with ``dvc update data.dvc`` (or downloads the URL below by
hand). :func:`load_cifar10` verifies its MD5 and SHA-256 and reads the pickled batches straight
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
# The official archive (170 498 071 bytes): its published MD5, and its SHA-256 as Keras pins it
# (``keras.datasets.cifar10``). MD5 alone catches a corrupt file, not a forged one; the archive is
# unpickled, so both must match before it is opened.
CIFAR10_DIGESTS = {
    "md5": "c58f30108f718f92721af3b95e74349a",
    "sha256": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
}
DEFAULT_ARCHIVE = Path("data/cifar-10-python.tar.gz")
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def digests(path: str | Path, chunk: int = 1 << 20) -> dict[str, str]:
    """The MD5 and SHA-256 hex digests of the file at ``path``, in one read."""
    hashes = {name: hashlib.new(name) for name in CIFAR10_DIGESTS}
    with open(path, "rb") as f:
        while block := f.read(chunk):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def verify_archive(path: str | Path = DEFAULT_ARCHIVE, expected: dict[str, str] = CIFAR10_DIGESTS) -> Path:
    """Return ``path`` if it exists with the ``expected`` digests (MD5 and SHA-256); otherwise say
    how to fetch it."""
    path = Path(path)
    how = (
        f"fetch it with `dvc update data.dvc` (DVC downloads {CIFAR10_URL} to {DEFAULT_ARCHIVE}), "
        f"or download that URL by hand to {path}"
    )
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 archive not found at {path}: {how}")
    actual = digests(path)
    wrong = [f"{name.upper()} {actual[name]}, expected {v}" for name, v in expected.items() if actual[name] != v]
    if wrong:
        raise ValueError(
            f"CIFAR-10 archive {path} has {'; '.join(wrong)}: it is corrupt or not the official archive, "
            f"and is not unpickled; {how}"
        )
    return path


def load_cifar10(
    path: str | Path = DEFAULT_ARCHIVE, expected: dict[str, str] | None = CIFAR10_DIGESTS
) -> dict[str, tuple[Tensor, Tensor]]:
    """Read the archive into ``{"train": (x, y), "test": (x, y)}`` after checking its digests.

    ``x`` is ``uint8 (N, 3, 32, 32)``, ``y`` is ``int64 (N,)`` (50 000 / 10 000 images in the
    real archive). ``expected``: the digests to check (test fixtures pass their own).
    """
    path = verify_archive(path, expected or {})
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
