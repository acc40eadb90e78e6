"""Fuzz params.yaml: every invalid file must give a clear message naming its key, by every entry point.

    python tests/common/params_fuzz.py            # value and file-level mutations, `check` and `run`: the counts
    python tests/common/params_fuzz.py --dvc      # the file-level mutations through `dvc repro` in a scratch clone

Three kinds of mutation, each invalid by construction:

* values (:func:`mutations`): one key's value at a time, in every section, in the base block and, where the key
  is overridden, in the ``ci:`` and ``paper:`` blocks;
* structure (:func:`structural`): whole sections or scale blocks of the wrong type, unknown keys;
* the file itself (:func:`file_level`): unknown top-level keys of any YAML type, deep nesting, aliases, a huge
  list or file, an empty file, a file that is not a mapping, not UTF-8, a tab, a duplicate key, and values that
  are invalid only at a scale other than the file's (``cross-scale``).

Each is tried through ``check`` (:func:`sobolev.pipeline.check_params`) and, for the file-level ones, through
``run`` (:func:`sobolev.pipeline.run_stage` with the computation replaced by a sentinel: reaching it means the
file was accepted) and ``dvc repro`` (``--dvc``). Counted: a clean message (a ParamError / StageError naming what
it should, cut to a readable length), a traceback (any other exception), an accepted invalid file, a wrong or
missing key in the message, a message longer than :data:`MAX_MESSAGE`. ``tests/common/test_config.py`` asserts
that all but the first are 0 and that ``check`` and ``run`` refuse exactly the same files.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

from sobolev import pipeline
from sobolev.common.install import InstallError
from sobolev.common.params import ParamError
from sobolev.pipeline import SECTIONS, StageError, check_params, run_stage

ROOT = Path(__file__).resolve().parents[2]
ZERO_OK = {"threads", "long_steps", "teacher_ent_coef", "weight_decay", "record_seed", "market_seed", "warmup"}
EMPTY_OK = {"sweep_weights", "sweep_sizes", "sweep_arms", "milestones", "balanced_alphas", "atari_games",
            "atari_bins", "switch_at"}  # fmt: skip
REPEATS_OK = {"seeds", "budget_seeds"}  # one seed count per size: sizes may share a count
FREE_TEXT = {"teacher_dir", "cifar_path"}
BAD_ANY = [None, True, {"a": 1}]
MAX_MESSAGE = 2000  # characters: a message names the key and shows the value cut short, never the whole of it
RUN_STAGE = "s51-differential-ml"  # the stage `run` and `dvc repro` are tried with (any stage validates the file)


class ComputingError(Exception):
    """Raised where a stage would start computing: the file was accepted."""


class NoAliasDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Writes a mutated mapping as plain YAML: an object used twice is written twice, not as an alias (which the
    loader refuses on its own, hiding the value under test)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def mutations(key: str, value: object) -> list[object]:
    """Values that are invalid for ``key`` whose committed value is ``value``."""
    if isinstance(value, bool):
        return [None, "x", 2]
    if isinstance(value, int):
        out = [*BAD_ANY, "x", [], -1, 1.5, 10**12, 1e300, math.nan, math.inf]
        return out if key in ZERO_OK else [*out, 0]
    if isinstance(value, float):
        out = [*BAD_ANY, "x", [], -1.0, 1e300, math.nan, math.inf, -math.inf]
        return out if key in ZERO_OK else [*out, 0.0]
    if isinstance(value, str):
        return [*BAD_ANY, 1, []] if key in FREE_TEXT else [*BAD_ANY, 1, [], "nonsense", ""]
    if isinstance(value, list):
        out = [*BAD_ANY, "x", 5, [None], [{"a": 1}]]
        if key not in EMPTY_OK:
            out.append([])
        if value:
            first = value[0]
            if key not in REPEATS_OK:
                out.append([first, first])  # a repeat
            if isinstance(first, int | float) and not isinstance(first, bool):
                out += [[-1], [math.nan], [1e300], ["x"]]
            if isinstance(first, str):
                out += [["nonsense"], [1]]
            if isinstance(first, list):
                out += [[[1]], [["x", 1]], [[10**6, 10**6]]]
        return out
    if value is None:
        return [5, [1], {"a": 1}]
    raise TypeError(f"no mutations for {key}={value!r}")


def structural(params: dict) -> list[tuple[str, str, object]]:
    """Whole-block breakages: (where, expected key in the message, the broken params)."""
    out = []
    for section in SECTIONS:
        for bad in ([1, 2], "x", None, 5):
            out.append((section, section, {**params, section: bad}))
        for block in ("ci", "paper"):
            for bad in ([1, 2], "fast", 3):
                p = copy.deepcopy(params)
                p[section][block] = bad
                out.append((f"{section}.{block}", f"{section}.{block}", p))
        p = copy.deepcopy(params)
        p[section]["no_such_key"] = 1
        out.append((f"{section}.no_such_key", f"{section}.no_such_key", p))
        p = copy.deepcopy(params)
        p[section].setdefault("paper", {})["no_such_key"] = 1
        out.append((f"{section}.paper.no_such_key", f"{section}.paper.no_such_key", p))
    for bad in ("huge", None, 1, ["paper"]):
        out.append(("scale", "scale", {**params, "scale": bad}))
    return out


def value_cases(params: dict) -> list[tuple[str, str, str]]:
    """(where, expected key, file text) for every value and structural mutation."""
    cases = list(structural(params))
    for section in SECTIONS:
        for key, value in params[section].items():
            if key in ("ci", "paper"):
                continue
            for bad in mutations(key, value):
                for block in (None, "ci", "paper"):
                    if block is not None and key not in params[section].get(block, {}):
                        continue
                    if block == "paper" and key == "games":
                        continue  # games may not appear in a scale block at all (tested on its own)
                    p = copy.deepcopy(params)
                    (p[section] if block is None else p[section][block])[key] = bad
                    where = f"{section}.{key}" if block is None else f"{section}.{block}.{key}"
                    cases.append((where, where, p))
    return [(where, expected, yaml.dump(p, Dumper=NoAliasDumper)) for where, expected, p in cases]


def file_level(text: str) -> list[tuple[str, str, str | bytes]]:
    """(case, expected words in the message, the whole file) for mutations of the file itself."""
    ci_functions = "    functions: [booth, rosenbrock]\n"  # features.ci.functions
    assert text.count(ci_functions) == 1 and "scale: default\n" in text and "    atari_games: []" in text
    nest = lambda depth: "[" * depth + "]" * depth  # noqa: E731
    nine = lambda i: ", ".join([f"*l{i - 1}"] * 9)  # noqa: E731
    laughs = "    l0: &l0 [lol]\n" + "".join(f"    l{i}: &l{i} [{nine(i)}]\n" for i in range(1, 10))
    huge_list = "[" + ", ".join(["beale"] * 20_000) + "]"
    return [
        ("unknown top-level key foo", "foo", text + "foo: 1\n"),
        ("unknown top-level key 1", "[1]", text + "1: a\n"),
        ("unknown top-level key null", "[None]", text + "null: 1\n"),
        ("unknown top-level key true", "[True]", text + "true: 1\n"),
        ("a list nested 990 deep", "nested more than", text + f"foo: {nest(990)}\n"),
        ("a list nested 100 000 deep", "nested more than", text + f"foo: {nest(100_000)}\n"),
        ("billion laughs in features.ci.functions", "aliases",
         text.replace(ci_functions, laughs + "    functions: *l9\n")),
        ("20 000 entries in features.ci.functions", "features.ci.functions",
         text.replace(ci_functions, f"    functions: {huge_list}\n")),
        ("a 2 MB file", "bytes", text + "#" * 2_000_000 + "\n"),
        ("an empty file", "mapping", ""),
        ("a list instead of a mapping", "mapping", "- scale\n- default\n"),
        ("a number instead of a mapping", "mapping", "42\n"),
        ("not UTF-8", "UTF-8", b"\xff\xfe" + text.encode()),
        ("a tab", "tab", text.replace("\n  functions:", "\n\tfunctions:", 1)),
        ("a duplicate top-level key", "duplicate key 'scale'", text + "scale: ci\n"),
        ("cross-scale: a base value only the default scale reads, file at ci", "deviations.atari_games",
         text.replace("scale: default\n", "scale: ci\n", 1).replace("atari_games: [", "atari_games: [nonsense, ", 1)),
        ("cross-scale: a ci value, file at default", "deviations.ci.atari_games",
         text.replace("    atari_games: []", "    atari_games: [nonsense]", 1)),
    ]  # fmt: skip


def _write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _verdict(counts: Counter, entry: str, where: str, expected: str, attempt: Callable[[], object]) -> str:
    """Run ``attempt`` and count its outcome under ``entry``; returns ``clean``, ``accepted`` or ``traceback``."""
    counts[f"{entry}: tried"] += 1
    try:
        attempt()
    except (ParamError, StageError, InstallError) as err:
        counts[f"{entry}: clean message"] += 1
        message = str(err)
        if expected not in message:
            counts[f"{entry}: wrong key named"] += 1
            print(f"{entry}: wrong key: {where}: {message[:300]}")
        if len(message) > MAX_MESSAGE:
            counts[f"{entry}: message too long"] += 1
            print(f"{entry}: {len(message):,}-character message: {where}")
        return "clean"
    except ComputingError:
        counts[f"{entry}: accepted invalid"] += 1
        print(f"{entry}: accepted: {where}")
        return "accepted"
    except Exception as err:
        counts[f"{entry}: traceback"] += 1
        print(f"{entry}: traceback: {where}: {type(err).__name__}: {str(err)[:300]}")
        return "traceback"
    counts[f"{entry}: accepted invalid"] += 1
    print(f"{entry}: accepted: {where}")
    return "accepted"


def run(tmp: Path, values: bool = True) -> Counter:
    """Every case through ``check``; the file-level ones through ``run`` as well. ``values=False`` skips the
    value and structural mutations (thousands of files)."""
    text = (ROOT / "params.yaml").read_text()
    counts: Counter = Counter()
    path = tmp / "params.yaml"
    if values:
        for where, expected, content in value_cases(yaml.safe_load(text)):
            _write(path, content)
            _verdict(counts, "check", where, expected, lambda: check_params(path))
    root = tmp / "root"
    (root / "results").mkdir(parents=True, exist_ok=True)

    def computing(*_, **__):
        raise ComputingError

    saved = pipeline.execute
    pipeline.execute = computing  # where the stage would start its notebook
    try:
        for where, expected, content in file_level(text):
            _write(path, content)
            _write(root / "params.yaml", content)
            checked = _verdict(counts, "check", where, expected, lambda: check_params(path))
            ran = _verdict(counts, "run", where, expected,
                           lambda: run_stage(RUN_STAGE, None, root / "params.yaml", root, progress=False))  # fmt: skip
            counts["check and run differ"] += checked != ran
            counts["file-level cases"] += 1
    finally:
        pipeline.execute = saved
    return counts


def run_dvc(tmp: Path, timeout: float = 120.0) -> Counter:
    """Every file-level case through ``dvc repro -s`` in a scratch clone of this working tree: ``accepted`` when the
    stage's staging folder appears (it computes; killed at once), ``clean`` when the pipeline's own message ends
    the run, ``refused by dvc`` when DVC stops before the stage's command, ``traceback`` for a Python traceback."""
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    text = (clone / "params.yaml").read_text()
    counts: Counter = Counter()
    for where, _, content in file_level(text):
        _write(clone / "params.yaml", content)
        staging = clone / "results" / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.Popen(["dvc", "repro", "-s", RUN_STAGE], cwd=clone, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        start, verdict = time.monotonic(), None
        while proc.poll() is None:
            if staging.exists() and any(staging.iterdir()):
                os.killpg(proc.pid, signal.SIGKILL)
                verdict = "accepted"
                break
            if time.monotonic() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                verdict = "timeout"
                break
            time.sleep(0.2)
        output = proc.communicate()[0]
        if verdict is None:
            if "Traceback" in output:
                verdict = "traceback"
            elif "error: " in output and "sobolev.pipeline" in output:
                verdict = "clean"
            elif proc.returncode:
                verdict = "refused by dvc"
            else:
                verdict = "accepted"
        counts[verdict] += 1
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        print(f"dvc repro: {verdict}: {where}: {last[:200]}", flush=True)
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clone, check=True)
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dvc", action="store_true", help="the file-level cases through `dvc repro` instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = run_dvc(Path(folder)) if args.dvc else run(Path(folder))
    print(", ".join(f"{k}: {v}" for k, v in sorted(result.items())))
    sys.exit(0)
