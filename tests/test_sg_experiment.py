import pytest
import torch

from sobolev.synthetic.decoupled import VARIANTS
from sobolev.synthetic.experiment import (
    SM_CIFAR_LAYERS,
    accuracy,
    augment,
    cifar_blocks,
    load_digits_split,
    train_variant,
)


def test_the_sm_network_and_its_cuts():
    blocks = cifar_blocks()
    convs = [m for m in blocks.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [w for w, _ in SM_CIFAR_LAYERS]
    assert [c.stride[0] for c in convs] == [s for _, s in SM_CIFAR_LAYERS]
    assert len(blocks) == 4  # three cuts, three SG modules
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in blocks.modules()) == len(SM_CIFAR_LAYERS)
    blocks.eval()
    h = torch.zeros(2, 3, 32, 32)
    shapes = []
    for b in blocks:
        h = b(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (10,)]


def test_scaled_network_for_digits():
    blocks = cifar_blocks(1, 10, 8, width_scale=0.25)
    out = torch.zeros(3, 1, 8, 8)
    for b in blocks:
        out = b(out)
    assert out.shape == (3, 10)


def test_bad_cuts_and_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"cuts must be increasing layer counts within 1..10 .* got \[2, 11\]"):
        cifar_blocks(cuts=(2, 11))
    with pytest.raises(ValueError, match="cuts must be increasing"):
        cifar_blocks(cuts=(5, 2))
    with pytest.raises(ValueError, match="image_size must be a multiple of 8, got 28"):
        cifar_blocks(image_size=28)


def test_digits_split_is_disjoint_and_normalised():
    data = load_digits_split()
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert len(ytr) + len(yte) == 1797 and len(yte) == round(1797 * 0.25)
    assert xtr.shape[1:] == (1, 8, 8) and float(xtr.max()) <= 1.0 and float(xtr.min()) >= 0.0
    flat_tr = {tuple(v.flatten().tolist()) for v in xtr}
    overlap = sum(tuple(v.flatten().tolist()) in flat_tr for v in xte)
    assert overlap <= 5  # a handful of digits are pixel-identical duplicates in the dataset itself
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(1.5)


def test_augment_is_a_crop_and_flip():
    x = torch.arange(64 * 1 * 4 * 4, dtype=torch.float32).view(64, 1, 4, 4)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), pad=0, flip=False), x)
    flipped = augment(x, torch.Generator().manual_seed(0), pad=0, flip=True)
    is_flipped = [torch.equal(a, b.flip(2)) for a, b in zip(flipped, x, strict=True)]
    assert all(f or torch.equal(a, b) for f, a, b in zip(is_flipped, flipped, x, strict=True))
    assert 10 < sum(is_flipped) < 54  # about half are flipped: an identity (or flip-all) fails here
    cropped = augment(x, torch.Generator().manual_seed(1), pad=2, flip=False)
    assert cropped.shape == x.shape
    # Every crop is a window of the zero-padded image, and the windows vary (not all centred).
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(64):
        windows = {(r, c): padded[i, :, r : r + 4, c : c + 4] for r in range(5) for c in range(5)}
        hits = [rc for rc, w in windows.items() if torch.equal(cropped[i], w)]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10 and (2, 2) in offsets


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_on_digits(variant):
    torch.set_num_threads(2)
    data = load_digits_split()
    result = train_variant(variant, data, seed=0, steps=30, batch_size=64, lr=0.05, width_scale=0.125, log_every=10)
    n_test = len(data["test"][1])
    correct = result["test_accuracy"] * n_test
    assert abs(correct - round(correct)) < 1e-9  # a count of test images, over all of them
    cuts = {row["cut"] for row in result["curve"]}
    if variant in ("backprop", "no_backprop"):
        assert all(row["cosine"] != row["cosine"] for row in result["curve"])  # nan: no SG modules
        assert [row["step"] for row in result["curve"]] == [10, 20, 30]
    else:  # one diagnostic per cut and logged step, each a real number
        assert cuts == {0, 1, 2} and [row["step"] for row in result["curve"]] == [10] * 3 + [20] * 3 + [30] * 3
        assert all(row["cosine"] == row["cosine"] for row in result["curve"])
    if variant == "backprop":
        assert result["test_accuracy"] > 0.5  # well above chance (0.1) after 30 steps


def test_accuracy_uses_eval_mode_and_restores_train_mode():
    blocks = cifar_blocks(1, 10, 8, width_scale=0.125)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))
    bn = blocks[0][0][1]
    before = int(bn.num_batches_tracked)
    acc = accuracy(blocks, x, y, batch=7)
    assert int(bn.num_batches_tracked) == before and blocks.training
    blocks.eval()
    with torch.no_grad():
        out = x
        for block in blocks:
            out = block(out)
    blocks.train()
    assert acc == int((out.argmax(1) == y).sum()) / len(y)  # eval-mode predictions, over all batches


def test_table_ordering_and_metrics_from_known_results():
    import json

    import pandas as pd

    from sobolev.synthetic import report as sg

    acc = {"no_backprop": 0.5, "direct": 0.6, "small_model": 0.7, "critic": 0.9, "sobolev": 0.85, "backprop": 0.95}
    results = pd.DataFrame(
        [{"variant": v, "seed": s, "test_accuracy": a + 0.01 * s, "test_images": 200} for v, a in acc.items()
         for s in range(2)]
    )  # fmt: skip
    table = sg.table1(results)
    assert list(table.index) == list(sg.PAPER_ORDER)
    assert table.loc["critic", "ours mean"] == pytest.approx(90.5)
    assert table.loc["critic", "ours std"] == pytest.approx(100 * 0.01 / 2**0.5)
    order = sg.ordering(table)
    assert [h for *_, h in order] == [True, True, True, False, True]  # sobolev < critic here
    curves = pd.DataFrame(
        [{"variant": "sobolev", "seed": s, "step": t, "loss": 1.0, "cut": 0, "cosine": 0.1 * t + s} for s in range(2)
         for t in (1, 2)]
        + [{"variant": "backprop", "seed": 0, "step": 2, "loss": 1.0, "cut": 0, "cosine": float("nan")}]
    )  # fmt: skip
    m = sg.metrics("digits", results, table, order, curves)
    json.dumps(m, allow_nan=False)  # valid JSON: the paper's missing backprop std becomes null
    assert m["test_images"] == 200 and len(m["runs"]) == 12 and m["ordering_pairs_holding"] == "4/5"
    assert m["final_cosine"] == {"sobolev/cut0": pytest.approx(0.7)}
    assert next(r for r in m["table"] if r["variant"] == "backprop")["paper std"] is None
