import pickle
import tarfile

import pytest
import torch
from fakes import fake_archive

from sobolev.synthetic_gradients.cifar import CIFAR10_DIGESTS, digests, load_cifar10, verify_archive


def test_loads_the_official_layout(tmp_path):
    path = fake_archive(tmp_path / "c.tar.gz")
    data = load_cifar10(path, expected=digests(path))
    x, y = data["train"]
    with tarfile.open(path) as tar:  # the second training batch's first image, channel-major rows of 32
        raw = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_2").read())
    assert torch.equal(x[4], torch.from_numpy(raw[b"data"][0].reshape(3, 32, 32)))
    assert int(y[4]) == int(raw[b"labels"][0])
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (20,) and y.dtype == torch.int64 and int(y.max()) < 10
    assert data["test"][0].shape == (4, 3, 32, 32)


def test_missing_archive_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dvc update data.dvc.*cifar-10-python.tar.gz"):
        verify_archive(tmp_path / "nope.tar.gz")


def test_wrong_checksum_is_rejected(tmp_path):
    path = fake_archive(tmp_path / "c.tar.gz")
    with pytest.raises(ValueError, match=f"MD5 .*expected {CIFAR10_DIGESTS['md5']}; SHA256 .*not unpickled"):
        load_cifar10(path)
    forged = {**digests(path), "sha256": CIFAR10_DIGESTS["sha256"]}  # an MD5 collision alone is not enough
    with pytest.raises(ValueError, match=f"has SHA256 .*expected {CIFAR10_DIGESTS['sha256']}"):
        load_cifar10(path, expected=forged)


def test_digests_are_the_standard_ones(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"sobolev" * 300_000)  # more than one read chunk
    assert digests(path, chunk=1000) == {
        "md5": hashlib.md5(path.read_bytes()).hexdigest(),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
