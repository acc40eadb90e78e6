"""Speed of one Section 4.2 distillation iteration, regular against Sobolev, side by side in one run (ratios).

    python benchmarks/bench_distill_step.py [--threads 2] [--batch 200] [--actions 6] [--out FILE]

One Adam iteration of the SM's student (:class:`sobolev.distillation.distill.StudentNet`) on a batch of
4×84×84 states, distilled from an (untrained) NatureCNN teacher
(:class:`sobolev.distillation.atari.TeacherNet`; its weights do not change the cost). Lines:

* regular distillation (the KL alone);
* Sobolev with the teacher's VJP on the fly (``teacher_gradients: on_the_fly``), and the share of that
  iteration spent in the teacher's forward and input-gradient pass alone (frozen weights: no graph for them);
* the same teacher pass with channels-last tensors (does it help on this CPU?);
* Sobolev with the teacher's input Jacobians stored once (``teacher_gradients: stored``, what the
  pipeline uses), and the one-off cost of storing them, per state;
* the autograd floors the ratios are measured against: the student's forward + backward alone (what any
  regular iteration must do), and its forward + input-gradient pass (with its graph) + the backward through
  both (what any Sobolev iteration must do), with a trivial loss, no teacher, no optimiser step;
* gathering a batch of states: from histories stacked once (:meth:`Recording.inputs`) against a 4-frame gather
  and a channels-last copy per batch.
"""

from __future__ import annotations

import argparse

import torch
from timing import log, timed, write

from sobolev.distillation.atari import TeacherNet
from sobolev.distillation.distill import Recording, StudentNet, TeacherJacobians, distillation_loss


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

    def iteration(alpha: float, layout: str = "channels-last", stored: bool = False) -> None:
        jac = jacobians(torch.arange(b)) if stored else None
        out = distillation_loss(student[layout], teacher[layout], s[layout], target, alpha, 1, generator, jac)
        opts[layout].zero_grad(set_to_none=True)
        out["loss"].backward()
        opts[layout].step()

    def floor(sobolev: bool) -> None:
        """The student's own passes with a trivial loss: the work no implementation can skip."""
        net = student["channels-last"]
        x = s["channels-last"].detach().requires_grad_(sobolev)
        out = net(x)
        if sobolev:
            v = torch.randn(b, a, generator=generator)
            (g,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
            (out.sum() + g.square().sum()).backward()
        else:
            out.sum().backward()
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
    floor_reg = timed(lambda: floor(False), repeats=5, inner=5)
    floor_sob = timed(lambda: floor(True), repeats=5, inner=5)
    log(f"  floor of a regular iteration (student forward + backward alone): {1e3 * floor_reg:.1f} ms = "
        f"{floor_reg / reg:.2f} x regular")  # fmt: skip
    log(f"  floor of a Sobolev iteration (student forward + input gradient with its graph + backward through both): "
        f"{1e3 * floor_sob:.1f} ms = {floor_sob / reg:.2f} x regular = {floor_sob / floor_reg:.2f} x the regular "
        "floor")  # fmt: skip
    t = timed(lambda: iteration(0.0, "contiguous"), repeats=5, inner=5)
    log(f"regular, contiguous tensors: {1e3 * t:.1f} ms = {t / reg:.2f} x regular")
    stored = timed(lambda: iteration(1.0, stored=True), repeats=5, inner=5)
    log(f"sobolev, teacher Jacobians stored (the default): {1e3 * stored:.1f} ms = {stored / reg:.2f} x regular "
        f"(floor {floor_sob / reg:.2f} x; overhead above it {1e3 * (stored - floor_sob):.1f} ms)")  # fmt: skip
    fly = timed(lambda: iteration(1.0), repeats=5, inner=5)
    log(f"sobolev, teacher VJP on the fly: {1e3 * fly:.1f} ms = {fly / reg:.2f} x regular "
        f"(floor {floor_sob / reg:.2f} x)")  # fmt: skip
    t_pass = timed(lambda: teacher_pass("channels-last"), repeats=5, inner=5)
    log(f"  of which the teacher's forward + input gradient: {1e3 * t_pass:.1f} ms = {100 * t_pass / fly:.0f}%")
    t = timed(lambda: iteration(1.0, "contiguous"), repeats=5, inner=5)
    log(f"sobolev, teacher VJP on the fly, contiguous tensors: {1e3 * t:.1f} ms = {t / reg:.2f} x regular")
    t = timed(lambda: teacher_pass("contiguous"), repeats=5, inner=5)
    log(f"  of which the teacher's forward + input gradient: {1e3 * t:.1f} ms = {t / t_pass:.2f} x channels-last")
    build = timed(lambda: TeacherJacobians(teacher["channels-last"], _Rec(s["channels-last"]), torch.arange(b)),
                  repeats=3, inner=1, warmup=1)  # fmt: skip
    log(
        f"storing the Jacobians, once: {1e3 * build / b:.2f} ms per state = the on-the-fly saving of "
        f"{build / b / max((fly - stored) / b, 1e-12):.1f} visits of that state"
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
