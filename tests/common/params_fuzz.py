"""Fuzz params.yaml one value at a time: every invalid value must give a clear message naming its key.

``python tests/common/params_fuzz.py`` prints the counts (tried, clean message, traceback, accepted
invalid, wrong key named); ``tests/common/test_config.py::test_params_fuzz`` asserts the last three are 0.
Each mutation is invalid by construction for its key's kind (see :func:`mutations`), and is tried
in the base block and, where the key is overridden, in the ``ci:`` and ``paper:`` blocks.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path

import yaml

from sobolev.common.params import ParamError
from sobolev.pipeline import StageError, check_params

ROOT = Path(__file__).resolve().parents[2]
ZERO_OK = {"threads", "long_steps", "teacher_ent_coef", "weight_decay", "record_seed", "warmup"}
EMPTY_OK = {"sweep_weights", "sweep_sizes", "sweep_arms", "milestones", "balanced_alphas"}
REPEATS_OK = {"seeds"}  # one seed count per size: sizes may share a count
FREE_TEXT = {"teacher_dir", "cifar_path"}
BAD_ANY = [None, True, {"a": 1}]


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
    raise TypeError(f"no mutations for {key}={value!r}")


def structural(params: dict) -> list[tuple[str, str, object]]:
    """Whole-block breakages: (where, expected key in the message, the broken params)."""
    out = []
    for section in ("theory", "regression", "synthetic_gradients", "distillation"):
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
        p[section]["paper"]["no_such_key"] = 1
        out.append((f"{section}.paper.no_such_key", f"{section}.paper.no_such_key", p))
    for bad in ("huge", None, 1, ["paper"]):
        out.append(("scale", "scale", {**params, "scale": bad}))
    return out


def run(tmp: Path) -> Counter:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cases = list(structural(params))
    for section in ("theory", "regression", "synthetic_gradients", "distillation"):
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
    counts: Counter = Counter()
    path = tmp / "params.yaml"
    for where, expected, p in cases:
        counts["tried"] += 1
        path.write_text(yaml.dump(p, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)))
        try:
            check_params(path)
        except (ParamError, StageError) as err:
            counts["clean message"] += 1
            if expected not in str(err):
                counts["wrong key named"] += 1
                print(f"wrong key: {where}: {err}")
        except Exception as err:
            counts["traceback"] += 1
            print(f"traceback: {where}: {type(err).__name__}: {err}")
        else:
            counts["accepted invalid"] += 1
            print(f"accepted: {where}")
    tab = tmp / "tab.yaml"
    text = (ROOT / "params.yaml").read_text()
    assert "\n  functions:" in text
    tab.write_text(text.replace("\n  functions:", "\n\tfunctions:", 1))
    counts["tried"] += 1
    try:
        check_params(tab)
    except ParamError:
        counts["clean message"] += 1
    except Exception:
        counts["traceback"] += 1
    else:
        counts["accepted invalid"] += 1
    return counts


if __name__ == "__main__":
    import tempfile

    result = run(Path(tempfile.mkdtemp()))
    keys = ("tried", "clean message", "traceback", "accepted invalid", "wrong key named")
    print(", ".join(f"{k}: {result[k]}" for k in keys))
