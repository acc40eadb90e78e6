"""Fake inputs shared by tests in several folders (``tests/`` is on ``sys.path``: its ``conftest.py`` puts it there)."""

import io
import pickle
import tarfile

import numpy as np


def fake_archive(path, n=4):
    """A tiny archive in the official layout: cifar-10-batches-py/{data_batch_1..5,test_batch}."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path
