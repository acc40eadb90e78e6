import builtins
from pathlib import Path

import pytest
import torch
from torch import nn

from sobolev.common.params import ParamError
from sobolev.synthetic_gradients.decoupled import DecoupledTrainer
from sobolev.synthetic_gradients.imagenet import ImageNetCritic, load_config, require_torchvision, resnet_blocks

ROOT = Path(__file__).resolve().parents[2]


class FakeResNet(nn.Module):
    """The attribute layout of torchvision's ResNet, tiny (torchvision is not needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = (
            nn.Conv2d(3, 4, 3, 2, 1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Identity(),
        )
        self.layer1, self.layer2 = nn.Conv2d(4, 4, 3, 1, 1), nn.Conv2d(4, 8, 3, 2, 1)
        self.layer3, self.layer4 = nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 5)


@pytest.mark.parametrize("modules,n_blocks", [(1, 2), (3, 4)])
def test_resnet_is_split_at_the_sm_cuts(modules, n_blocks):
    net = FakeResNet().eval()
    blocks = resnet_blocks(net, modules)
    assert len(blocks) == n_blocks
    x = torch.randn(2, 3, 16, 16)
    out = x
    for b in blocks:
        out = b(out)
    ref = x
    for layer in (
        net.conv1,
        net.bn1,
        net.relu,
        net.maxpool,
        net.layer1,
        net.layer2,
        net.layer3,
        net.layer4,
        net.avgpool,
    ):
        ref = layer(ref)
    torch.testing.assert_close(out, net.fc(ref.flatten(1)))
    with pytest.raises(ValueError, match=r"modules must be one of \[1, 3\]"):
        resnet_blocks(net, 2)


def test_imagenet_critic_plugs_into_the_trainer():
    blocks = resnet_blocks(FakeResNet(), 3)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,))
    trainer = DecoupledTrainer(
        blocks,
        "sobolev",
        5,
        x,
        torch.optim.SGD(blocks.parameters(), lr=0.01),
        module_factory=lambda s, n: ImageNetCritic(s, n, width=6),
    )
    assert all(isinstance(m, ImageNetCritic) for m in trainer.sg_modules) and len(trainer.sg_modules) == 3
    out = trainer.step(x, y, diagnostics=True)
    assert len(out["cosine"]) == 3
    m, g = trainer.sg_modules[0].loss_and_grad(torch.randn(4, 4, 8, 8), y, create_graph=False)
    assert m.shape == (4,) and g.shape == (4, 4, 8, 8)


def test_config_is_checked_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageNet folder with train/ and val/"):
        load_config(str(ROOT / "configs/imagenet_resnet50.yaml"), {"data": str(tmp_path)})
    (tmp_path / "train").mkdir()
    cfg = load_config(str(ROOT / "configs/imagenet_resnet50.yaml"), {"data": str(tmp_path), "modules": 1})
    assert cfg.modules == 1 and cfg.milestones == [100_000, 150_000, 175_000]  # from the YAML file
    with pytest.raises(ParamError, match=r"command line.variant='hogwild': must be one of backprop"):
        load_config(str(ROOT / "configs/imagenet_resnet50.yaml"), {"data": str(tmp_path), "variant": "hogwild"})
    with pytest.raises(ParamError, match=r"missing parameter\(s\) imagenet.variant"):
        load_config(None, {"data": str(tmp_path)})  # every value comes from the config file
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs/imagenet_resnet50.yaml").read_text() + "learning_rate: 0.1\n")
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) imagenet.learning_rate"):
        load_config(str(bad), {"data": str(tmp_path)})


def test_missing_or_broken_torchvision_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ImportError, match=r"needs torchvision built for your torch .*torchvision::nms"):
        require_torchvision()
