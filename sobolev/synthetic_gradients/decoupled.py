"""Decoupled training with synthetic gradients (Section 4.3, SM §4).

A network is a list of blocks; after every block but the last a *cut* holds a synthetic
gradient (SG) module that gives the block below its gradient at once, from ``(h, y)``,
with no backpropagation through the blocks above. Variants (one per Table 1 column):

* ``backprop``: plain end-to-end backpropagation (no SG modules);
* ``no_backprop``: blocks below the top get no learning signal at all;
* ``direct``: the module predicts ``∂L/∂h`` directly and regresses on the arriving gradient;
* ``small_model``: a small classifier ``m(h, y) = L(p(h|θ), y)``; the synthetic gradient is
  ``∂m/∂h``, supervised on the gradient only;
* ``critic``: the same ``m``, supervised on the loss value only;
* ``sobolev``: the same ``m``, supervised on the loss value *and* the gradient.

Targets arrive as in DNI: at the top cut they are the true per-sample loss and gradient;
at a lower cut they are what the block above sends back (its own synthetic gradient
propagated through it, and the critic above's loss estimate): detached, never
backpropagated into the main network. Module losses are L2 by default (the conditional mean:
the expected gradient, as DNI) or L1 (SM §4: the conditional median, near zero for sparse noisy
gradients), each term optionally relative to its target's size. Gradients are per
sample (the gradient of each sample's own loss), the scale an SG module can predict.
Synchronous single process; the paper trained asynchronously (Hogwild, several GPUs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SG_LOSSES = ("l1", "l2")
VARIANTS = ("backprop", "no_backprop", "direct", "small_model", "critic", "sobolev")
CRITIC_VARIANTS = ("small_model", "critic", "sobolev")


def _one_hot(y: Tensor, n_classes: int, like: Tensor) -> Tensor:
    """Labels as one-hot channels broadcast over ``like``'s spatial axes: ``(B, n_classes, ...)``."""
    oh = F.one_hot(y, n_classes).to(like.dtype)
    return oh.view(*oh.shape, *([1] * (like.ndim - 2))).expand(-1, -1, *like.shape[2:])


def _layer_for(feature_shape: Sequence[int]) -> Callable[[int, int], nn.Module]:
    """A resolution-preserving layer ``(in, out) -> module`` for features of ``feature_shape``:
    ``(C,)`` linear, ``(C, L)`` kernel-3 1-D convolution, ``(C, H, W)`` 3×3 convolution."""
    if len(feature_shape) == 1:
        return nn.Linear
    if len(feature_shape) == 2:
        return lambda i, o: nn.Conv1d(i, o, 3, padding=1)
    if len(feature_shape) == 3:
        return lambda i, o: nn.Conv2d(i, o, 3, padding=1)
    raise ValueError(f"feature_shape must be (C,), (C, L) or (C, H, W), got {tuple(feature_shape)}")


def _norm_for(feature_shape: Sequence[int]) -> Callable[[int], nn.Module]:
    """Batch normalisation over ``width`` channels for features of ``feature_shape``."""
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d}[len(feature_shape)]


class DirectSG(nn.Module):
    """Predicts the per-sample gradient ``∂L/∂h`` from ``(h, y)``.

    Feature maps ``(B, C, H, W)`` or ``(B, C, L)``: 3 resolution-preserving convolutions (3×3 or
    kernel 3) of ``width`` channels (SM §4.2); vectors ``(B, F)``: a two-hidden-layer MLP. The
    hidden layers are batch-normalised, as DNI's: without it the ReLUs die in the lower cuts'
    modules, whose bootstrapped targets start near zero (outputting zero is then cheapest), and
    those modules output zero for the rest of training. The last layer starts at zero, so
    training starts from zero synthetic gradients (DNI practice).
    """

    def __init__(self, feature_shape: Sequence[int], n_classes: int, width: int = 128) -> None:
        super().__init__()
        self.n_classes = n_classes
        layer, norm = _layer_for(feature_shape), _norm_for(feature_shape)
        channels = feature_shape[0]
        self.net = nn.Sequential(
            layer(channels + n_classes, width), norm(width), nn.ReLU(),
            layer(width, width), norm(width), nn.ReLU(),
            layer(width, channels),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([h, _one_hot(y, self.n_classes, h)], 1))


class CriticSG(nn.Module):
    """``m(h, y) = CE(p(h|θ), y)``: a small classifier on ``h`` whose per-sample loss is the
    critic's estimate, and whose input gradient is the synthetic gradient.

    Feature maps: a 3×3 (or kernel-3) convolution of ``width`` channels, global average pooling,
    a linear layer; vectors: one hidden layer of ``width`` units. ``net`` replaces that classifier (it
    must map ``h`` to ``(B, n_classes)`` logits), e.g. SM §4.3's ImageNet module.
    """

    def __init__(
        self,
        feature_shape: Sequence[int],
        n_classes: int,
        width: int = 64,
        net: nn.Module | None = None,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        if net is None:
            layer = _layer_for(feature_shape)
            head: list[nn.Module] = []
            if len(feature_shape) > 1:  # feature maps: pool to a vector
                pool = nn.AdaptiveAvgPool1d(1) if len(feature_shape) == 2 else nn.AdaptiveAvgPool2d(1)
                head = [pool, nn.Flatten()]
            net = nn.Sequential(layer(feature_shape[0], width), nn.ReLU(), *head, nn.Linear(width, n_classes))
            if zero_last:  # m = log(n_classes) and a zero synthetic gradient at the start, as DNI's modules
                nn.init.zeros_(net[-1].weight)
                nn.init.zeros_(net[-1].bias)
        self.net = net

    def loss(self, h: Tensor, y: Tensor) -> Tensor:
        """The critic's per-sample loss estimate, ``(B,)``."""
        return F.cross_entropy(self.net(h), y, reduction="none")

    def loss_and_grad(self, h: Tensor, y: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
        """Per-sample loss ``(B,)`` and per-sample synthetic gradient ``∂m_b/∂h_b`` (like ``h``)."""
        h = h.detach().requires_grad_(True)
        with torch.enable_grad():
            m = self.loss(h, y)
            # retain_graph: the critic's own loss on m is backpropagated afterwards.
            (g,) = torch.autograd.grad(m.sum(), h, create_graph=create_graph, retain_graph=True)
        return m, g


def _cosine(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a.detach().flatten(), b.detach().flatten(), dim=0))


class DecoupledTrainer:
    """Train ``blocks`` (the last one outputs logits) with one of :data:`VARIANTS`.

    Args:
        blocks: the main network, split at the cuts.
        variant: one of :data:`VARIANTS`.
        n_classes: number of classes (the SG modules see one-hot labels).
        example: one input batch, to infer each cut's feature shape.
        main_optimizer: optimiser over the blocks' parameters only.
        sg_lr: Adam learning rate of the SG modules (SM §4.2: 1e-4).
        sg_width: hidden width of the default SG modules.
        module_factory: builds the SG module of a cut from its feature shape and the class
            count, instead of :class:`DirectSG` / :class:`CriticSG` (e.g. SM §4.3's ImageNet
            critic); critic variants need a ``loss_and_grad`` method like :class:`CriticSG`.
        sg_loss: ``"l2"`` (squared error: modules regress the conditional mean) or ``"l1"`` (the SM's).
        relative: divide each module loss term by its target's size in the batch, so that the
            Sobolev critic's value and gradient terms weigh alike whatever the gradients' scale.
        zero_last: start the critics' last layer at zero (DNI practice; direct modules always do).
    """

    def __init__(
        self,
        blocks: nn.ModuleList,
        variant: str,
        n_classes: int,
        example: Tensor,
        main_optimizer: torch.optim.Optimizer,
        sg_lr: float = 1e-4,
        sg_width: int | None = None,
        module_factory: Callable[[tuple[int, ...], int], nn.Module] | None = None,
        sg_loss: str = "l2",
        relative: bool = True,
        zero_last: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if sg_loss not in SG_LOSSES:
            raise ValueError(f"sg_loss must be one of {', '.join(SG_LOSSES)}, got {sg_loss!r}")
        self.sg_loss, self.relative = sg_loss, relative
        if len(blocks) < 2 and variant != "backprop":
            raise ValueError(f"need at least 2 blocks (one cut) for variant {variant!r}, got {len(blocks)}")
        self.blocks, self.variant, self.n_classes, self.opt = blocks, variant, n_classes, main_optimizer
        shapes = []
        with torch.no_grad():
            training = [b.training for b in blocks]
            a = example
            for block in blocks[:-1]:
                block.eval()
                a = block(a)
                shapes.append(tuple(a.shape[1:]))
            for block, mode in zip(blocks, training, strict=True):
                block.train(mode)
        self.sg_modules = nn.ModuleList()
        if variant in ("direct", *CRITIC_VARIANTS):
            if module_factory is None:
                cls = DirectSG if variant == "direct" else CriticSG
                kwargs = {} if sg_width is None else {"width": sg_width}
                if variant != "direct":
                    kwargs["zero_last"] = zero_last
                self.sg_modules.extend(cls(s, n_classes, **kwargs) for s in shapes)
            else:
                self.sg_modules.extend(module_factory(s, n_classes) for s in shapes)
        self.sg_opt = torch.optim.Adam(self.sg_modules.parameters(), lr=sg_lr) if len(self.sg_modules) else None

    def step(self, x: Tensor, y: Tensor, diagnostics: bool = False) -> dict:
        """One training step. Returns the loss and, with ``diagnostics``, the cosine similarity
        between each cut's synthetic gradient and the true gradient (full backpropagation)."""
        self.opt.zero_grad(set_to_none=True)
        if self.variant == "backprop":
            loss = F.cross_entropy(self._forward_full(x), y)
            loss.backward()
            self.opt.step()
            return {"loss": float(loss.detach())}
        B = x.shape[0]
        # Forward, detached at every cut: no gradient can flow from a block to the one below.
        inputs, outputs = [x], []
        for block in self.blocks[:-1]:
            h = block(inputs[-1])
            outputs.append(h)
            inputs.append(h.detach().requires_grad_(True))
        per_sample = F.cross_entropy(self.blocks[-1](inputs[-1]), y, reduction="none")
        per_sample.mean().backward()  # top block's parameters, and the true ∂L/∂h at the top cut
        out: dict = {"loss": float(per_sample.detach().mean()), "cosine": [], "norm_ratio": [], "module_loss": []}
        target_grad = inputs[-1].grad * B  # per sample
        target_loss = per_sample.detach()
        true_grad = target_grad
        if self.sg_opt is not None:
            self.sg_opt.zero_grad(set_to_none=True)
        for k in reversed(range(len(outputs))):
            h = outputs[k]
            if self.variant == "no_backprop":
                continue
            synthetic, module_loss, m_est = self._module_step(k, h, y, target_grad, target_loss)
            out["module_loss"].insert(0, module_loss)
            if diagnostics:
                out["cosine"].insert(0, _cosine(synthetic, true_grad))
                out["norm_ratio"].insert(0, float(synthetic.detach().norm() / true_grad.norm().clamp_min(1e-30)))
                if k > 0:  # true gradient one cut lower: VJP through block k on the same forward
                    (true_grad,) = torch.autograd.grad(h, inputs[k], grad_outputs=true_grad, retain_graph=True)
            # The block below the cut learns from the synthetic gradient alone (per-sample → mean).
            h.backward(synthetic.detach() / B)
            if k > 0:
                target_grad = inputs[k].grad * B  # what block k sends down: the next cut's target
                target_loss = m_est
        if self.sg_opt is not None:
            self.sg_opt.step()
        self.opt.step()
        return out

    def _module_step(
        self, k: int, h: Tensor, y: Tensor, target_grad: Tensor, target_loss: Tensor
    ) -> tuple[Tensor, float, Tensor]:
        """Synthetic gradient at cut ``k``, the module's loss (its gradients accumulated), and its
        detached loss estimate (the next cut's loss target; the true loss for non-critics)."""
        module, hd = self.sg_modules[k], h.detach()
        if self.variant == "direct":
            synthetic = module(hd, y)
            loss = self._distance(synthetic, target_grad)
            loss.backward()
            return synthetic, float(loss.detach()), target_loss
        train_grad = self.variant in ("small_model", "sobolev")
        m, synthetic = module.loss_and_grad(hd, y, create_graph=train_grad)
        loss = hd.new_zeros(())
        if self.variant in ("critic", "sobolev"):
            loss = loss + self._distance(m, target_loss)
        if train_grad:
            loss = loss + self._distance(synthetic, target_grad)
        loss.backward()
        return synthetic, float(loss.detach()), m.detach()

    def _distance(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Mean over the batch of the per-sample L1 (or squared L2) error of ``estimate`` against
        the detached ``target`` (both ``(B, ...)``). With ``relative``, divided by the batch's mean
        target size, so that the value and gradient terms of a Sobolev critic weigh alike whatever
        the gradients' scale. The batch's own size, not a running mean: a lagging mean of targets
        that grow from zero (the bootstrapped targets below a zero-initialised module) inflates
        the early loss, and Adam's second moment remembers it for about 1/(1 - β₂) steps. A target
        that is exactly zero carries nothing to learn yet and gives a zero loss."""
        target = target.detach()
        size = (lambda t: t.abs().sum(1)) if self.sg_loss == "l1" else (lambda t: t.pow(2).sum(1))
        error = size((estimate - target).reshape(len(target), -1)).mean()
        if not self.relative:
            return error
        current = size(target.reshape(len(target), -1)).mean()
        return error * 0.0 if current == 0 else error / current

    def _forward_full(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x
