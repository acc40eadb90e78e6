import numpy as np
import pandas as pd
import pytest
import torch

from sobolev.core.datasets import load_mnist1d_split
from sobolev.synthetic_gradients.compute import SM_CIFAR_LAYERS, Result, accuracy, sm_blocks, train_variant
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig
from sobolev.synthetic_gradients.data import augment, load_digits_split
from sobolev.synthetic_gradients.decoupled import VARIANTS


def test_the_sm_network_and_its_cuts():
    blocks = sm_blocks()
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
    blocks = sm_blocks(1, 10, 8, width_scale=0.25)
    out = torch.zeros(3, 1, 8, 8)
    for b in blocks:
        out = b(out)
    assert out.shape == (3, 10)


def test_the_1d_network_for_mnist1d():
    blocks = sm_blocks(1, 10, 40, width_scale=0.25, dims=1)
    assert all(isinstance(m, torch.nn.Conv1d) for m in blocks.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    assert sum(isinstance(m, torch.nn.Conv1d) for m in blocks.modules()) == len(SM_CIFAR_LAYERS)
    blocks.eval()
    h, shapes = torch.zeros(3, 1, 40), []
    for b in blocks:
        h = b(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(16, 40), (32, 20), (64, 10), (10,)]  # cuts at the end of the first three resolutions


def test_mnist1d_is_generated_offline_reproducibly_and_leaves_numpy_seeded_as_it_was():
    import numpy as np

    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    data = load_mnist1d_split(200)
    assert np.random.rand() == expected_next  # the package's global seeding is undone
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert xtr.shape == (160, 1, 40) and xte.shape == (40, 1, 40) and xtr.dtype == torch.float32
    assert sorted(torch.cat([ytr, yte]).bincount().tolist()) == [20] * 10  # one share per class
    x = torch.cat([xtr, xte])
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 0.01  # standardised over the whole set
    again = load_mnist1d_split(200)
    assert torch.equal(again["train"][0], xtr) and torch.equal(again["test"][1], yte)
    other = load_mnist1d_split(200, seed=7)
    assert not torch.equal(other["train"][0], xtr)
    with pytest.raises(ValueError, match="samples must be a multiple of 10"):
        load_mnist1d_split(205)
    with pytest.raises(ValueError, match="train_fraction"):
        load_mnist1d_split(200, train_fraction=1.0)


def test_missing_mnist1d_package_names_the_pip_command(monkeypatch):
    import sys

    from sobolev.core.datasets import require_mnist1d

    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install mnist1d==0\.0\.2\.post1"):
        require_mnist1d()


def test_bad_cuts_and_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"cuts must be increasing layer counts within 1..10 .* got \[2, 11\]"):
        sm_blocks(cuts=(2, 11))
    with pytest.raises(ValueError, match="cuts must be increasing"):
        sm_blocks(cuts=(5, 2))
    with pytest.raises(ValueError, match="size must be a multiple of 8, got 28"):
        sm_blocks(size=28)
    with pytest.raises(ValueError, match=r"dims must be 1 \(signals\) or 2 \(images\), got 3"):
        sm_blocks(dims=3)


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
    blocks = sm_blocks(1, 10, 8, width_scale=0.125)
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


def known_results(seeds: int, spread: float = 0.002):
    """Accuracies with known paired differences: every seed moves all variants alike, plus a
    small per-seed wobble, so differences of 0.1 are decided and 0 is not."""
    import pandas as pd

    acc = {"no_backprop": 0.5, "direct": 0.6, "small_model": 0.7, "critic": 0.9, "sobolev": 0.9, "backprop": 0.85}
    return pd.DataFrame(
        [{"variant": v, "seed": s, "test_accuracy": a + 0.03 * s + spread * ((s * 7 + i) % 3 - 1),
          "train_accuracy": 1.0, "test_images": 1000}
         for i, (v, a) in enumerate(acc.items()) for s in range(seeds)]
    )  # fmt: skip


def test_table_and_ordering_are_decided_on_paired_seeds():
    import json

    from sobolev.synthetic_gradients import report as sg

    results = known_results(6)
    table = sg.table1(results)
    assert list(table.index) == list(sg.PAPER_ORDER)
    per_seed = 100 * results[results.variant == "critic"].test_accuracy.to_numpy()
    assert table.loc["critic", "median"] == pytest.approx(float(np.median(per_seed)))
    assert table.loc["critic", "low"] <= table.loc["critic", "median"] <= table.loc["critic", "high"]
    assert table.loc["critic", "per_seed"] == [round(float(a), 2) for a in per_seed]
    order = sg.ordering(results).set_index("pair")
    # The seeds' common shift (3 points per seed) cancels in the paired difference: decided although
    # the per-variant intervals overlap.
    assert order.loc["no_backprop < direct", "difference"] == pytest.approx(10, abs=0.5)
    assert order.verdict.tolist() == ["holds", "holds", "holds", "undecided", "does not hold"]
    few = sg.ordering(known_results(3))
    assert set(few.verdict) == {"undecided"}  # fewer than MIN_SEEDS seeds decide nothing
    result = Result(SyntheticGradientsConfig.load("ci"), results, curve_rows(6))
    verdicts = sg.claims(result)
    room = verdicts[0]
    assert room.holds is True and f"backprop {table.loc['backprop', 'median']:.1f}%" in room.evidence  # below 97%
    m = sg.metrics(result)
    json.dumps(m, allow_nan=False)  # valid JSON: the paper's missing backprop std becomes null
    assert m["ordering_pairs_holding"] == "3/5" and len(m["runs"]) == 36 and m["test_images"] == 1000
    assert next(r for r in m["table"] if r["variant"] == "backprop")["paper_std"] is None
    block = sg.readme_block(m)
    assert "| critic < sobolev |" in block and "undecided" in block and "[REPRODUCED] The task has room" in block


def curve_rows(seeds: int, steps: int = 100, every: int = 10):
    """Curves with known values: cosine = 0.1·cut + step/1000 + 0.01·seed (sobolev) and 0.05
    lower (critic); the loss halves until step 50, then stays flat."""
    rows = []
    for v, offset in (("sobolev", 0.0), ("critic", -0.05), ("backprop", None)):
        for s in range(seeds):
            for t in range(every, steps + 1, every):
                for c in range(3 if offset is not None else 1):
                    cos = float("nan") if offset is None else 0.1 * c + t / 1000 + 0.01 * s + offset
                    rows.append({"variant": v, "seed": s, "step": t, "loss": 2.0 ** -min(t, 50) * 10, "cut": c,
                                 "cosine": cos, "norm_ratio": 0.5})  # fmt: skip
    return pd.DataFrame(rows)


def test_window_averaged_cosine_plateau_and_cosine_comparisons():
    from sobolev.synthetic_gradients import report as sg

    curves = curve_rows(5)
    windowed = sg.windowed_cosine(curves, windows=5)
    assert set(windowed.variant) == {"sobolev", "critic"}  # backprop has no SG modules
    one = windowed[(windowed.variant == "sobolev") & (windowed.cut == 1) & (windowed.seed == 0)]
    # Steps 10, 20 fall into window 1 (of 5 over 100 steps): the mean of 0.1 + 0.01 and 0.1 + 0.02.
    assert one.window.tolist() == [1, 2, 3, 4, 5] and one.cosine.iloc[0] == pytest.approx(0.115)
    assert one.step.tolist() == [20, 40, 60, 80, 100]
    final = sg.final_cosine(windowed).set_index(["variant", "cut"])
    assert final.loc[("sobolev", 2), "cosine"] == pytest.approx(0.2 + 0.095 + 0.02)  # median seed: 2
    assert final.loc[("sobolev", 2), "norm_ratio"] == 0.5
    compare = sg.cosine_comparisons(windowed)
    mine = compare[compare.other == "critic"]
    assert mine.difference.tolist() == pytest.approx([0.05] * 3) and set(mine.verdict) == {"sobolev better"}
    flat = sg.plateau(curves, windows=5)
    assert flat.loc["backprop", "change"] == pytest.approx(0.0)  # flat after step 50
    assert list(flat.index) == ["critic", "sobolev", "backprop"]


def test_plateau_sees_a_falling_loss():
    from sobolev.synthetic_gradients import report as sg

    curves = curve_rows(2, steps=40, every=10)  # still halving at every log
    assert (sg.plateau(curves, windows=4).change < -0.4).all()


def test_config_rejects_bad_module_settings_before_training():
    from sobolev.common.params import ParamError
    from sobolev.synthetic_gradients.config import SyntheticGradientsConfig

    cfg = SyntheticGradientsConfig.load("ci")
    assert cfg.dataset == "mnist1d"
    with pytest.raises(ParamError, match=r"invalid parameter synthetic_gradients.sg_loss='l3'"):
        SyntheticGradientsConfig.from_values({**cfg.to_dict(), "sg_loss": "l3"})
    with pytest.raises(ParamError, match=r"synthetic_gradients.samples.*multiple of 10"):
        SyntheticGradientsConfig.from_values({**cfg.to_dict(), "samples": 1005})
    with pytest.raises(ParamError, match=r"invalid parameter synthetic_gradients.workers=0"):
        SyntheticGradientsConfig.from_values({**cfg.to_dict(), "workers": 0})


def test_runs_are_the_same_on_one_worker_or_two():
    from sobolev.synthetic_gradients.compute import run_table
    from sobolev.synthetic_gradients.config import SyntheticGradientsConfig

    cfg = SyntheticGradientsConfig.load("ci").replace(samples=200, seeds=2, steps=6, milestones=[4], log_every=3,
                                             variants=["no_backprop", "sobolev", "backprop"], threads=1)  # fmt: skip
    one, curves_one = run_table(cfg.replace(workers=1))
    two, curves_two = run_table(cfg.replace(workers=2))
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(curves_one, curves_two)
    assert one.variant.tolist() == ["no_backprop"] * 2 + ["sobolev"] * 2 + ["backprop"] * 2  # params' order
    assert one.seed.tolist() == [0, 1] * 3
