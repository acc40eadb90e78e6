"""Environments, teacher loaders and the Section 4.2 chain on tiny settings (Breakout ROM ships in ale-py)."""

import sys

import pytest
import torch
import yaml

from sobolev.common.params import ParamError, read_params
from sobolev.distillation import atari
from sobolev.distillation.chain import _subset
from sobolev.distillation.config import DistillationConfig
from sobolev.distillation.distill import Recording, reverse_kl, run_policy
from sobolev.pipeline import StageError, run_stage


@pytest.fixture(scope="module")
def saved_agents(tmp_path_factory):
    """Untrained SB3 agents saved in the RL Zoo's zip format: a PPO and an A2C for Breakout."""
    from stable_baselines3 import A2C, PPO

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("agents")
    env = atari.make_env("breakout", seed=0)
    PPO("CnnPolicy", env, seed=0, device="cpu").save(folder / "ppo.zip")
    A2C("CnnPolicy", env, seed=0, device="cpu").save(folder / atari.hub_zip_name("breakout", "a2c"))
    env.close()
    return folder


def test_unknown_game_is_rejected():
    with pytest.raises(ValueError, match="unknown game 'tetris'; allowed: pong, breakout, space_invaders"):
        atari.make_env("tetris", seed=0)
    assert atari.hub_zip_name("pong") == "a2c-PongNoFrameskip-v4.zip"


def test_histories_rebuilt_from_single_frames_equal_the_envs_frame_stack():
    env = atari.make_env("breakout", seed=3, for_training=False)
    obs, frames, episodes, stacks, episode = env.reset(), [], [], [], 0
    g = torch.Generator().manual_seed(0)
    while episode < 2 and len(frames) < 5000:
        frames.append(torch.as_tensor(obs[0, :, :, -1]).clone())
        stacks.append(torch.as_tensor(obs[0]).permute(2, 0, 1).clone())
        episodes.append(episode)
        obs, _, done, _ = env.step(torch.randint(4, (1,), generator=g).numpy())
        episode += int(done[0])
    env.close()
    assert episode == 2  # the check below crosses an episode boundary
    rec = Recording(torch.stack(frames), torch.tensor(episodes), torch.zeros(len(frames), 4))
    assert torch.equal(rec.stacks(torch.arange(len(frames))), torch.stack(stacks))


def test_teacher_net_is_the_agents_policy_and_pins_in_float16(saved_agents, tmp_path):
    agent = atari.load_agent(saved_agents / "ppo.zip", "ppo")
    obs = torch.randint(0, 256, (3, 84, 84, 4), dtype=torch.uint8)
    sb3_obs, _ = agent.policy.obs_to_tensor(obs.numpy())
    expected = agent.policy.get_distribution(sb3_obs).distribution.logits  # normalised log-probs
    net = atari.TeacherNet.from_sb3(agent.policy)
    assert torch.allclose(net(atari.as_model_input(obs)), expected, atol=1e-6)
    sharp = atari.TeacherNet.from_sb3(agent.policy, temperature=0.5)(atari.as_model_input(obs))
    assert torch.allclose(sharp, torch.log_softmax(2 * expected, -1), atol=1e-5)
    assert (atari.policy_entropy_ratio(sharp) < atari.policy_entropy_ratio(expected)).all()
    with pytest.raises(ValueError, match="temperature"):
        atari.TeacherNet(4, temperature=0.0)
    # Pinned: float16 weights on disk, float32 and frozen when loaded; the policy moves by float16 rounding only.
    atari.save_teacher(net, tmp_path / "teacher.pt", game="breakout", env_steps=0)
    assert (tmp_path / "teacher.pt").stat().st_size < 2.2 * sum(p.numel() for p in net.parameters())
    back = atari.load_teacher(tmp_path / "teacher.pt")
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in back.parameters())
    assert torch.allclose(back(atari.as_model_input(obs)), expected, atol=1e-2)
    assert atari.teacher_info(tmp_path / "teacher.pt")["game"] == "breakout"
    with pytest.raises(FileNotFoundError, match="run s42-teacher GAME"):
        atari.load_teacher(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="is a teacher for breakout, not pong"):
        atari.load_teacher(tmp_path / "teacher.pt", game="pong")


def test_loaders_fail_clearly(saved_agents, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no agent"):
        atari.load_agent(tmp_path / "missing.zip", "ppo")
    with pytest.raises(ValueError, match="algo"):
        atari.load_agent(saved_agents / "ppo.zip", "dqn")
    monkeypatch.setitem(sys.modules, "huggingface_sb3", None)  # not installed
    with pytest.raises(ImportError, match="pip install huggingface_sb3"):
        atari.download_hub_agent("pong")
    agent = atari.load_agent(saved_agents / "ppo.zip", "ppo")
    with pytest.raises(ValueError, match="the teacher has 4 actions but pong has 6"):
        atari.check_action_space(agent, "pong")
    assert atari.check_action_space(agent, "breakout") == 4


def test_hub_download_goes_through_huggingface_sb3(saved_agents, monkeypatch):
    import types

    calls = []
    fake = types.SimpleNamespace(
        load_from_hub=lambda repo_id, filename: calls.append((repo_id, filename)) or str(saved_agents / filename)
    )
    monkeypatch.setitem(sys.modules, "huggingface_sb3", fake)
    path = atari.download_hub_agent("breakout")
    assert calls == [("sb3/a2c-BreakoutNoFrameskip-v4", "a2c-BreakoutNoFrameskip-v4.zip")]
    assert atari.load_agent(path, "a2c").action_space.n == 4


def test_run_policy_records_what_it_played(saved_agents):
    net = atari.TeacherNet.from_sb3(atari.load_agent(saved_agents / "ppo.zip", "ppo").policy).eval()
    rec = run_policy(net, "breakout", n_states=50, seed=0)
    assert len(rec) == 50 and rec.frames.dtype == torch.uint8 and rec.log_probs.shape == (50, 4)
    assert torch.allclose(rec.log_probs.exp().sum(1), torch.ones(50))
    with torch.no_grad():  # the stored log-probs are the policy's on the rebuilt histories
        assert torch.allclose(net(rec.inputs(torch.arange(50))), rec.log_probs, atol=1e-5)


def _params(tmp_path, **overrides):
    """A params.yaml: the committed file with a tiny distillation scale on top (the pipeline validates the
    whole file, so Section 5.4's Atari students are cut to this file's games)."""
    committed = read_params()
    base = {k: v for k, v in committed["distillation"].items() if k not in ("ci", "paper")}
    section = {
        **base,
        "games": ["breakout"], "teacher_source": "train", "teacher_algo": "ppo", "teacher_steps": 256,
        "teacher_envs": 2, "states": 1500, "fractions": [0.3, 0.5], "val_share": 0.2, "test_share": 0.3,
        "tune_fraction": 0.3, "seeds": 2, "max_iterations": 3, "patience": 2, "batch_size": 16,
        "lrs": [0.001, 0.0001], "alphas": [1.0], "teacher_gradients": "stored",
        "eval_every": 1, "eval_train_states": 50, "eval_states": 60, "threads": 2, "workers": 1, **overrides,
    }  # fmt: skip
    deviations = committed["deviations"]
    for block in (deviations, *(deviations[s] for s in ("ci", "paper") if isinstance(deviations.get(s), dict))):
        if "atari_games" in block:
            block["atari_games"] = [g for g in block["atari_games"] if g in section["games"]]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**committed, "scale": "default", "distillation": section}))
    return path


def _root(tmp_path, **overrides):
    """A repository root for the pipeline: its params.yaml and an empty results folder."""
    root = tmp_path / "repo"
    root.mkdir(exist_ok=True)
    _params(root, **overrides)
    return root


def test_each_stage_of_the_chain_runs_and_checks_its_inputs(tmp_path):
    import pandas as pd

    root = _root(tmp_path)
    params, out = root / "params.yaml", root / "results/distillation/games"

    def run(step, game):
        return run_stage(step, game, params, root, progress=False)

    with pytest.raises(FileNotFoundError, match=r"has no \['teacher\.pt'\]"):
        run("s42-record", "breakout")
    with pytest.raises(StageError, match="unknown stage"):
        run("play", "breakout")
    with pytest.raises(StageError, match=r"needs one of distillation\.games"):
        run("s42-teacher", "pong")
    assert run("s42-teacher", "breakout") == out / "breakout"
    info = atari.teacher_info(out / "breakout/teacher.pt")
    assert info["game"] == "breakout" and info["env_steps"] == 256 and info["source"] == "train"
    run("s42-record", "breakout")
    teacher = yaml.safe_load((out / "breakout/teacher.json").read_text())
    assert teacher["states"] == 1500 and teacher["n_actions"] == 4 and 0 < teacher["entropy_ratio_mean"] <= 1
    assert len(teacher["random_returns"]) == 10 and teacher["rl_zoo_a2c_return"] > 100
    run("s42-distill", "breakout")
    summary = yaml.safe_load((out / "breakout/summary.json").read_text())
    # Seeds × configurations: the paper's arm runs both lrs at α = 1; the balanced arm both lrs at its first α,
    # then its second α at its best lr; regular as many as the larger arm (both lrs and their midpoint).
    assert summary["budget_runs"] == {"regular": 2 * 3, "sobolev": 2 * 2, "balanced": 2 * 3}
    assert set(summary["splits"]) == {"train 0.3", "train 0.5", "val", "test"}
    assert summary["balance_scale"] > 0 and summary["balance_states"] == summary["splits"]["train 0.3"]
    runs = pd.read_csv(out / "breakout/runs.csv")
    grid = runs[runs.role == "grid"]  # every method at every point of its grid, both seeds, at the tuning fraction
    assert len(grid) == 2 * (3 + 2 + 3) and set(grid.fraction) == {0.3}
    regular_lrs = sorted(grid[grid.method == "regular"].lr.unique())
    assert regular_lrs == pytest.approx([0.0001, 0.001**0.5 * 0.0001**0.5, 0.001])
    final = runs[runs.role == "final"]  # the other fraction at the chosen points
    assert len(final) == 3 * 2 and set(final.fraction) == {0.5} and final.chosen.all()
    assert (runs.best_iteration <= runs.stopped_at).all() and runs.chosen.sum() == 2 * 3 * 2
    for method, hp in summary["chosen"].items():
        chosen = runs[runs.chosen & (runs.method == method)]
        assert chosen.lr.nunique() == 1 and chosen.alpha.nunique() == 1  # runs.csv keeps 6 significant digits
        assert (chosen.lr.iloc[0], chosen.alpha.iloc[0]) == pytest.approx((hp["lr"], hp["alpha"]), rel=1e-5)
        medians = grid[grid.method == method].groupby(["lr", "alpha"]).val_kl.median()
        # chosen by the median validation KL
        assert medians.idxmin() == pytest.approx((hp["lr"], hp["alpha"]), rel=1e-5)
    students = torch.load(out / "breakout/students.pt", weights_only=True)
    assert len(students["students"]) == runs.chosen.sum()
    # Curves on eval_states (60) fixed test states; the selected checkpoint's test KL on every test state, which is
    # what the saved students' test log-probabilities give.
    n_test = summary["splits"]["test"]
    assert n_test > 60
    picked = _subset(torch.arange(100, 100 + n_test), 60)
    assert len(picked) == 60 and picked[0] == 100 and picked[-1] == 99 + n_test and bool((picked.diff() > 0).all())
    for st in students["students"]:
        row = runs[runs.chosen & (runs.method == st["method"]) & (runs.seed == st["seed"])
                   & (runs.fraction == st["fraction"])]  # fmt: skip
        teacher_lp = students["teacher_log_probs"][st["test_idx"]]
        assert len(st["test_idx"]) == n_test
        full = float(reverse_kl(st["test"], teacher_lp).mean())
        assert row.test_kl.item() == pytest.approx(full, rel=1e-4)
    assert not list(out.rglob("*.tmp-*"))  # nothing half-written left behind
    assert not (root / "results/.staging").exists()


def test_distill_in_two_worker_processes_trains_the_same_runs_as_one(tmp_path):
    """Runs spread over spawned workers (shared-memory recording and Jacobians) give the serial runs' numbers, in the
    serial order, exactly: a run's result depends on its seed and on inputs computed at the runs' own thread count
    (the recording, the teacher's Jacobians), never on the worker layout. Exact equality holds on any CPU because no
    number is compared across thread counts: both layouts train every run on one thread and share one teacher (its
    training, a frozen stage, uses every worker's threads)."""
    import shutil

    import pandas as pd

    outputs = {}
    for workers in (1, 2):
        (tmp_path / f"w{workers}").mkdir()
        root = _root(tmp_path / f"w{workers}", threads=1, workers=workers, seeds=2, lrs=[0.001])
        params, games = root / "params.yaml", root / "results/distillation/games/breakout"
        if workers == 1:
            run_stage("s42-teacher", "breakout", params, root, progress=False)
        else:  # the pinned teacher: the same file in both layouts
            games.mkdir(parents=True)
            shutil.copy(tmp_path / "w1/repo/results/distillation/games/breakout/teacher.pt", games)
        for step in ("s42-record", "s42-distill"):
            run_stage(step, "breakout", params, root, progress=False)
        outputs[workers] = (
            pd.read_csv(games / "runs.csv").drop(columns="seconds"),
            pd.read_csv(games / "curves.csv"),
            yaml.safe_load((games / "summary.json").read_text()),
            (games / "recording.pt").read_bytes(),
        )
    (runs1, curves1, summary1, rec1), (runs2, curves2, summary2, rec2) = outputs[1], outputs[2]
    assert len(runs1) == 2 * (2 + 1 + 2) + 2 * 3  # seeds × grid points, then seeds × methods at the other fraction
    assert summary2["workers"] == 2 and summary2["chosen"] == summary1["chosen"]
    assert rec1 == rec2 and summary1["balance_scale"] == summary2["balance_scale"]
    pd.testing.assert_frame_equal(runs1, runs2, check_exact=True)
    pd.testing.assert_frame_equal(curves1, curves2, check_exact=True)


def test_hub_teacher_from_a_local_folder(saved_agents, tmp_path):
    root = _root(tmp_path, teacher_source="hub", teacher_algo="a2c", teacher_dir=str(saved_agents))
    out = run_stage("s42-teacher", "breakout", root / "params.yaml", root, progress=False)
    agent = atari.load_agent(saved_agents / atari.hub_zip_name("breakout", "a2c"), "a2c")
    obs = torch.randint(0, 256, (2, 84, 84, 4), dtype=torch.uint8)
    want = atari.TeacherNet.from_sb3(agent.policy)(atari.as_model_input(obs))
    assert torch.allclose(atari.load_teacher(out / "teacher.pt")(atari.as_model_input(obs)), want, atol=1e-2)
    assert atari.teacher_info(out / "teacher.pt")["hub_file"] == "a2c-BreakoutNoFrameskip-v4.zip"
    missing = _root(tmp_path, teacher_source="hub", teacher_algo="a2c", teacher_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"huggingface\.co/sb3/a2c-BreakoutNoFrameskip-v4"):
        run_stage("s42-teacher", "breakout", missing / "params.yaml", missing, progress=False)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("games", ["tetris"], "must be one of pong, breakout, space_invaders"),
        ("fractions", [0.1, 1.0], r"fraction in \(0, 1\)"),
        ("fractions", [0.0], r"number in \(0, 1\]"),
        ("tune_fraction", 0.4, "must be one of fractions"),
        ("balanced_alphas", [1.0, -1.0], r"balanced_alphas\[1\]"),
        ("teacher_source", "zoo", "must be one of train, hub"),
        ("teacher_temperature", 0, r"number in \(0, 100\]"),
        ("fractions", [0.6], r"val_share \(0.2\) \+ test_share \(0.3\) must be at most 1"),
        ("eval_every", 10, r"at most max_iterations \(3\)"),
        ("teacher_gradients", "cached", "must be one of stored, on_the_fly"),
        ("batch_size", 2000, r"must be at most states \(1500\)"),
    ],
)
def test_bad_distillation_params_name_the_parameter(tmp_path, key, value, message):
    with pytest.raises(ParamError, match=message) as err:
        DistillationConfig.load(path=_params(tmp_path, **{key: value}))
    assert f"distillation.{key}" in str(err.value)


def test_the_balanced_arm_is_optional(tmp_path):
    cfg = DistillationConfig.load(path=_params(tmp_path, balanced_alphas=[], alphas=[1.0], lrs=[0.001]))
    assert cfg.arms == {"sobolev": [1.0]}  # the paper's arm alone: the two-method chain
    cfg = DistillationConfig.load(path=_params(tmp_path, balanced_alphas=[0.1, 1.0, 3.0], alphas=[1.0]))
    assert cfg.arms == {"sobolev": [1.0], "balanced": [0.1, 1.0, 3.0]}


def test_paper_block_may_not_change_the_foreach_games(tmp_path):
    section = yaml.safe_load(_params(tmp_path).read_text())["distillation"]
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump({"scale": "paper", "distillation": {**section, "paper": {"games": ["pong"]}}}))
    with pytest.raises(ParamError, match=r"read from distillation\.games by DVC"):
        DistillationConfig.load(path=path)
