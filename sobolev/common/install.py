"""Installing a stage's outputs all at once, as every reader sees them: a journal, then a roll-forward.

A stage writes its outputs into a staging folder of its own; :func:`install` then moves them into
the output folder. A set of renames is not atomic, so the install is journalled: before the first
rename, ``out/.installing-<key>`` records the staging folder and the outputs (written atomically);
it is removed after the last rename. Once the journal exists the install is decided, and
:func:`settle` finishes it (rolls it forward: every output still in the staging folder is moved
in), whatever step a kill interrupted: the install and the recovery are one idempotent loop
(:func:`_roll_forward`). Every reader settles a folder before reading it (:func:`settled`; the
pipeline settles every results folder before a stage starts), so no reader ever sees half old,
half new outputs. One exclusive lock per folder (``out/.install.lock``) serialises installs and
settles: a reader waits for a live install to finish instead of finishing it itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sobolev.common.utils import atomic_write_text

JOURNAL = ".installing-{key}.json"  # in an output folder while (or since) its outputs are moved in
# A journal written half-way (killed before its rename): an install that never started, removed by settle().
UNWRITTEN_JOURNAL = ".installing-*.json.tmp-*"
LOCK = ".install.lock"


class InstallError(RuntimeError):
    """An interrupted install that cannot be finished; the message says how to restore the folder."""


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    with open(out / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install(staged: Path, out: Path, names: tuple[str, ...], key: str) -> None:
    """Move every output ``names`` from ``staged`` into ``out``, replacing what was there, all or nothing
    as readers see it (journal, then :func:`_roll_forward`). Refuses, replacing nothing, when ``staged``
    lacks a declared output or holds an undeclared one."""
    missing = [n for n in names if not (staged / n).exists()]
    if missing:
        raise InstallError(f"the stage did not write {missing} (declared outputs); nothing was replaced")
    undeclared = sorted(p.name for p in staged.iterdir() if p.name not in names and not p.name.startswith("."))
    if undeclared:
        raise InstallError(f"the stage wrote {undeclared}, which its section does not declare; nothing was replaced")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        journal = out / JOURNAL.format(key=key)
        record = {"key": key, "staged": str(staged.resolve()), "names": list(names)}
        atomic_write_text(journal, json.dumps(record) + "\n")  # from here on, the install is decided
        _roll_forward(out, journal)


def _roll_forward(out: Path, journal: Path) -> None:
    """Finish the install ``journal`` records: move in every output still in its staging folder (an
    output no longer there was moved in already), then remove the journal and the staging folder.
    Idempotent: a kill at any point leaves a state this function finishes."""
    record = _read(journal)
    staged = Path(record["staged"])
    if not staged.is_dir():
        names = ", ".join(record["names"])
        raise InstallError(
            f"{out}: the install of stage {record['key']} was interrupted and its staging folder {staged} is gone, "
            f"so {names} may be half old, half new. Re-run that stage (or restore the folder with `git checkout` / "
            f"`dvc checkout`), then delete {journal}."
        )
    for name in record["names"]:
        new, target, old = staged / name, out / name, staged / f".old-{name}"
        if not os.path.lexists(new):
            continue  # moved in before the interruption
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(old, ignore_errors=True)  # a folder cannot be replaced in one rename: swap it out
            target.rename(old)
        os.replace(new, target)
    for name in record["names"]:
        shutil.rmtree(staged / f".old-{name}", ignore_errors=True)
    journal.unlink()  # done: what is left of the staging folder is empty
    shutil.rmtree(staged, ignore_errors=True)


def _read(journal: Path) -> dict:
    try:
        record = json.loads(journal.read_text())
        if not isinstance(record, dict) or not {"key", "staged", "names"} <= set(record):
            raise ValueError("missing fields")
    except (OSError, ValueError) as err:
        raise InstallError(
            f"{journal} is not an install journal this version wrote ({err}): its folder may be half installed; "
            "re-run the stage that writes it (or restore the folder with `git checkout` / `dvc checkout`), then "
            "delete the journal"
        ) from err
    return record


def settle(out: Path) -> list[str]:
    """Finish every interrupted install into ``out`` (under its lock); returns the stages whose install was
    finished. Raises :class:`InstallError` when one cannot be finished."""
    if not out.is_dir() or not any(out.glob(".installing-*")):
        return []
    finished = []
    with _locked(out):
        for unwritten in out.glob(UNWRITTEN_JOURNAL):
            unwritten.unlink()
        for journal in sorted(out.glob(JOURNAL.format(key="*"))):  # re-read under the lock: a live install is done
            finished.append(_read(journal)["key"])
            _roll_forward(out, journal)
    return finished


def settled(out: str | Path) -> Path:
    """``out`` after :func:`settle`: what every reader of a stage's outputs calls first."""
    out = Path(out)
    settle(out)
    return out


def settle_all(results: Path) -> list[str]:
    """:func:`settle` every folder under ``results`` that holds a journal (before a stage reads or writes any)."""
    folders = sorted({j.parent for j in results.glob("**/.installing-*")}) if results.is_dir() else []
    return [key for folder in folders for key in settle(folder)]


def journalled_staging(results: Path) -> set[Path]:
    """The staging folders that journals under ``results`` still need (never to be cleared as leftovers)."""
    out = set()
    for journal in results.glob(f"**/{JOURNAL.format(key='*')}") if results.is_dir() else []:
        try:
            out.add(Path(json.loads(journal.read_text())["staged"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
