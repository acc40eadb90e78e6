"""The one training loop: logging, and a stop on NaN/inf that names the run, step and parameter."""

import pytest
import torch

from sobolev.core.training import NonFiniteLossError, train_loop


def test_logs_every_interval_and_at_the_end():
    logged = []
    diverged = train_loop(lambda i: torch.tensor(float(i)), 7, desc="t", hint="h", log_every=3,
                          on_log=lambda i, loss: logged.append((i, float(loss))), progress=False)  # fmt: skip
    assert logged == [(3, 3.0), (6, 6.0), (7, 7.0)] and diverged == []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_loss_stops_the_run_naming_step_run_and_cause(bad):
    calls = []

    def step(i):
        calls.append(i)
        return torch.tensor(bad if i == 4 else 1.0)

    message = r"section: run 3: the training loss became (nan|inf|-inf) at step 4 of 10; likely cause: section.lr"
    with pytest.raises(NonFiniteLossError, match=message + r" too large\. Nothing was written\."):
        train_loop(step, 10, desc="section: run 3", hint="section.lr too large", progress=False)
    assert calls == [1, 2, 3, 4]  # stopped at once


def test_an_ensemble_tolerates_diverged_models_until_all_diverge():
    def step(i):  # model 1 diverges at step 2, model 0 at step 5
        return torch.tensor([float("nan") if i >= 5 else 1.0, float("nan") if i >= 2 else 1.0])

    assert train_loop(step, 4, desc="e", hint="h", tolerate=True, progress=False) == [1]
    with pytest.raises(NonFiniteLossError, match=r"at step 5 of 6 \(models 0, 1\)"):
        train_loop(step, 6, desc="e", hint="h", tolerate=True, progress=False,
                   describe=lambda bad: "models " + ", ".join(map(str, bad)))  # fmt: skip


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        train_loop(lambda i: 0.0, 0, desc="t", hint="h", progress=False)
