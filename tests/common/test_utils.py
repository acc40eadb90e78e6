import pytest
import torch

from sobolev.common.utils import atomic_path, atomic_save, atomic_write_json, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_writes_replace_the_file_whole(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.txt", "text")  # missing folders are made
    atomic_write_json(tmp_path / "c.json", {"x": 1})
    atomic_save({"w": torch.arange(3)}, tmp_path / "d.pt")
    assert (tmp_path / "a" / "b.txt").read_text() == "text"
    assert (tmp_path / "c.json").read_text() == '{\n  "x": 1\n}\n'
    assert torch.equal(torch.load(tmp_path / "d.pt")["w"], torch.arange(3))
    assert not list(tmp_path.rglob("*.tmp-*"))
