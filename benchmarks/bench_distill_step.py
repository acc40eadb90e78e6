"""Speed of one Section 4.2 distillation iteration, regular against Sobolev, side by side in one run (ratios).

    python benchmarks/bench_distill_step.py [--threads 2] [--batch 200] [--actions 6] [--out FILE]

One Adam iteration of the SM's student (:class:`sobolev.distillation.distill.StudentNet`) on a batch of
4×84×84 states, distilled from an (untrained) NatureCNN teacher
(:class:`sobolev.distillation.atari.TeacherNet`; its weights do not change the cost). Lines:

* regular distillation (the KL alone);
* Sobolev by the tangent pass (:func:`~sobolev.distillation.distill.sobolev_distillation_step`, what the
  pipeline runs) with the teacher's input Jacobians stored once (``teacher_gradients: stored``) and with the
  teacher's VJP on the fly (``on_the_fly``), and the share of that iteration spent in the teacher's pass;
* Sobolev by autograd's double backward (:func:`~sobolev.distillation.distill.distillation_loss`, the
  reference implementation, same values), both ways;
* the same with contiguous tensors (channels-last helps on this CPU);
* the one-off cost of storing the Jacobians, per state;
* the floors the ratios are measured against, each the student's own passes with a trivial loss, no teacher,
  no optimiser step: forward + backward (any regular iteration); forward + input gradient with its graph +
  backward through both (any double-backward Sobolev iteration); forward + input gradient without a graph +
  the bias-free tangent pass + backward through primal and tangent (any tangent-pass Sobolev iteration);
* gathering a batch of states: from histories stacked once (:meth:`Recording.inputs`) against a 4-frame gather
  and a channels-last copy per batch.
"""

from __future__ import annotations

import argparse

import torch
from timing import log, timed, write

from sobolev.core.derivatives import forward_with_masks, linearised_forward
from sobolev.distillation.atari import TeacherNet
from sobolev.distillation.distill import (
    Recording,
    StudentNet,
    TeacherJacobians,
    distillation_loss,
    sobolev_distillation_step,
    teacher_vjp,
)


class _Rec:
    """The two things :class:`TeacherJacobians` reads from a recording: its length and its inputs."""

    def __init__(self, states: torch.Tensor):
        self.states = states
        self.frames = states

    def __len__(self) -> int:
        return len(self.states)

    def inputs(self, idx: torch.Tensor) -> torch.Tensor:
        return self.states[idx]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--actions", type=int, default=6, help="Space Invaders: 6, Breakout: 4")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, a = args.batch, args.actions
    layouts = {"channels-last": torch.channels_last, "contiguous": torch.contiguous_format}
    s = {name: torch.rand(b, 4, 84, 84).contiguous(memory_format=f) for name, f in layouts.items()}
    teacher = {name: TeacherNet(a).eval().requires_grad_(False).to(memory_format=f) for name, f in layouts.items()}
    student = {name: StudentNet(a).to(memory_format=f) for name, f in layouts.items()}
    with torch.no_grad():
        target = teacher["contiguous"](s["contiguous"])
    opts = {name: torch.optim.Adam(net.parameters(), lr=1e-4) for name, net in student.items()}
    generator = torch.Generator().manual_seed(0)
    jacobians = TeacherJacobians(teacher["channels-last"], _Rec(s["channels-last"]), torch.arange(b))

    everything = torch.arange(b)

    def iteration(alpha: float, layout: str = "channels-last", stored: bool = False) -> None:
        """One Adam iteration: regular (``alpha = 0``) or Sobolev by autograd's double backward."""
        jac = jacobians(everything) if stored else None
        out = distillation_loss(student[layout], teacher[layout], s[layout], target, alpha, 1, generator, jac)
        opts[layout].zero_grad(set_to_none=True)
        out["loss"].backward()
        opts[layout].step()

    def tangent_iteration(layout: str = "channels-last", stored: bool = False) -> None:
        """One Adam iteration of Sobolev distillation by the tangent pass (what the pipeline runs)."""
        net = student[layout]
        project = (lambda v: jacobians.project(everything, v)) if stored else teacher_vjp(teacher[layout], s[layout])
        out = sobolev_distillation_step(net, s[layout], target, 1.0, 1, generator, project)
        opts[layout].zero_grad(set_to_none=True)
        out["surrogate"].backward(inputs=list(net.parameters()))
        opts[layout].step()

    def floor(kind: str) -> None:
        """The student's own passes with a trivial loss: the work no implementation of ``kind`` can skip."""
        net = student["channels-last"]
        x = s["channels-last"].detach().requires_grad_(kind != "regular")
        if kind == "regular":
            net(x).sum().backward()
        elif kind == "double backward":
            out = net(x)
            v = torch.randn(b, a, generator=generator)
            (g,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
            (out.sum() + g.square().sum()).backward()
        else:
            out, masks = forward_with_masks(net.net, x)
            v = torch.randn(b, a, generator=generator)
            (g,) = torch.autograd.grad((out * v).sum(), x, retain_graph=True)
            (out.sum() + (v * linearised_forward(net.net, g, masks)).sum()).backward(inputs=list(net.parameters()))
        net.zero_grad(set_to_none=True)

    def teacher_pass(layout: str) -> None:
        x = s[layout].detach().requires_grad_(True)
        v = torch.randn(b, a, generator=generator)
        torch.autograd.grad((teacher[layout](x) * v).sum(), x)

    log(
        f"# Section 4.2 distillation iteration, batch {b}, {a} actions, SM student, NatureCNN teacher, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    reg = timed(lambda: iteration(0.0), repeats=5, inner=5)
    log(f"regular (channels-last, what the pipeline runs): {1e3 * reg:.1f} ms = 1.00 x regular")
    floors = {kind: timed(lambda k=kind: floor(k), repeats=5, inner=5)
              for kind in ("regular", "double backward", "tangent pass")}  # fmt: skip
    log(f"  floor of a regular iteration (student forward + backward alone): {1e3 * floors['regular']:.1f} ms = "
        f"{floors['regular'] / reg:.2f} x regular")  # fmt: skip
    double = floors["double backward"]
    log(f"  floor of a double-backward Sobolev iteration (forward + input gradient with its graph + backward through "
        f"both): {1e3 * double:.1f} ms = {double / reg:.2f} x regular")  # fmt: skip
    log(f"  floor of a tangent-pass Sobolev iteration (forward + input gradient without a graph + tangent pass + "
        f"backward through both): {1e3 * floors['tangent pass']:.1f} ms = {floors['tangent pass'] / reg:.2f} x "
        "regular")  # fmt: skip
    t = timed(lambda: iteration(0.0, "contiguous"), repeats=5, inner=5)
    log(f"regular, contiguous tensors: {1e3 * t:.1f} ms = {t / reg:.2f} x regular")
    fast = timed(lambda: tangent_iteration(stored=True), repeats=5, inner=5)
    log(f"sobolev, tangent pass, teacher Jacobians stored (what the pipeline runs): {1e3 * fast:.1f} ms = "
        f"{fast / reg:.2f} x regular (floor {floors['tangent pass'] / reg:.2f} x; overhead above it "
        f"{1e3 * (fast - floors['tangent pass']):.1f} ms)")  # fmt: skip
    fly_fast = timed(lambda: tangent_iteration(), repeats=5, inner=5)
    log(f"sobolev, tangent pass, teacher VJP on the fly: {1e3 * fly_fast:.1f} ms = {fly_fast / reg:.2f} x regular")
    t_pass = timed(lambda: teacher_pass("channels-last"), repeats=5, inner=5)
    log(f"  of which the teacher's forward + input gradient: {1e3 * t_pass:.1f} ms = {100 * t_pass / fly_fast:.0f}%")
    stored = timed(lambda: iteration(1.0, stored=True), repeats=5, inner=5)
    log(f"sobolev, double backward, teacher Jacobians stored: {1e3 * stored:.1f} ms = {stored / reg:.2f} x regular "
        f"(floor {floors['double backward'] / reg:.2f} x)")  # fmt: skip
    fly = timed(lambda: iteration(1.0), repeats=5, inner=5)
    log(f"sobolev, double backward, teacher VJP on the fly: {1e3 * fly:.1f} ms = {fly / reg:.2f} x regular")
    t = timed(lambda: tangent_iteration("contiguous"), repeats=5, inner=5)
    log(f"sobolev, tangent pass, teacher VJP on the fly, contiguous tensors: {1e3 * t:.1f} ms = {t / reg:.2f} x "
        "regular")  # fmt: skip
    t = timed(lambda: teacher_pass("contiguous"), repeats=5, inner=5)
    log(f"  of which the teacher's forward + input gradient: {1e3 * t:.1f} ms = {t / t_pass:.2f} x channels-last")
    build = timed(lambda: TeacherJacobians(teacher["channels-last"], _Rec(s["channels-last"]), torch.arange(b)),
                  repeats=3, inner=1, warmup=1)  # fmt: skip
    log(
        f"storing the Jacobians, once: {1e3 * build / b:.2f} ms per state = the on-the-fly saving of "
        f"{build / b / max((fly_fast - fast) / b, 1e-12):.1f} visits of that state"
    )
    frames = torch.randint(0, 256, (4000, 84, 84), dtype=torch.uint8)
    rec = Recording(frames, torch.arange(4000) // 1000, torch.zeros(4000, a))
    idx = torch.randint(4000, (b,))
    rec.inputs(idx)  # builds the stacked histories once
    cached = timed(lambda: rec.inputs(idx), repeats=5, inner=5)
    gather = timed(lambda: (rec.stacks(idx).float() / 255.0).contiguous(memory_format=torch.channels_last),
                   repeats=5, inner=5)  # fmt: skip
    log(
        f"a batch of states from histories stacked once: {1e3 * cached:.2f} ms = {100 * cached / reg:.0f}% of regular; "
        f"4-frame gather + channels-last copy per batch: {gather / cached:.1f} x that"
    )
    write(args.out)


if __name__ == "__main__":
    main()
