"""Validated parameters from ``params.yaml``: one source of every value, three scales.

Each section of ``params.yaml`` holds the default scale's values plus a ``ci:`` block (the tiny
scale nbval re-runs) and a ``paper:`` block (meant for a GPU), each overriding some keys. The
top-level ``scale`` switch picks one. A section's config is a frozen dataclass whose fields have
*no defaults* (a key missing from ``params.yaml`` is an error, never a silent fallback) and carry
their own check; cross-field checks live in :meth:`SectionConfig.check`. Every scale is
validated on every load, so a typo in ``paper:`` fails on the laptop, not on the GPU later, and
every message names the key as written (``regression.paper.steps``), its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import yaml

from sobolev.common.paths import PARAMS
from sobolev.common.utils import short

SCALES = ("ci", "default", "paper")
OVERRIDE_BLOCKS = ("ci", "paper")
Check = Callable[[str, Any], Any]


class ParamError(ValueError):
    """An invalid parameter; the message names the parameter, its value and what is allowed."""


def fail(name: str, value: Any, allowed: str) -> None:
    raise ParamError(
        f"invalid parameter {short(name) if not isinstance(name, str) else name}={short(value)}: {allowed}"
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --- field checks: (name, value) -> value, raising ParamError -------------------------------
def integer(lo: int, hi: int) -> Check:
    def check(name: str, v: Any) -> int:
        if not _is_int(v) or not lo <= v <= hi:
            fail(name, v, f"must be an integer in [{lo}, {hi:,}]")
        return v

    return check


def number(lo: float, hi: float, *, open_low: bool = False) -> Check:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``open_low``)."""

    def check(name: str, v: Any) -> float:
        # Bounds first: an integer beyond float range (1e400 written out) compares exactly, never overflows.
        ok = _is_number(v) and (v > lo if open_low else v >= lo) and v <= hi and (_is_int(v) or math.isfinite(v))
        if not ok:
            fail(name, v, f"must be a finite number in {'(' if open_low else '['}{lo:g}, {hi:g}]")
        return float(v)

    return check


def text(name: str, v: Any) -> str:
    if not isinstance(v, str):
        fail(name, v, "must be a string")
    return v


def choice(options: tuple[str, ...]) -> Check:
    def check(name: str, v: Any) -> str:
        if not isinstance(v, str) or v not in options:
            fail(name, v, f"must be one of {', '.join(options)}")
        return v

    return check


def items(item: Check, *, allow_empty: bool = False, increasing: bool = False, repeats: bool = False) -> Check:
    """A list whose entries pass ``item``; no repeats unless ``repeats``; optionally strictly increasing."""

    def check(name: str, v: Any) -> list:
        if not isinstance(v, list) or (not v and not allow_empty):
            fail(name, v, "must be a list" if allow_empty else "must be a non-empty list")
        out = [item(f"{name}[{i}]", x) for i, x in enumerate(v)]
        if not repeats and len({repr(x) for x in out}) != len(out):
            fail(name, v, "must not repeat an entry")
        if increasing and out != sorted(out):
            fail(name, v, "must be in increasing order")
        return out

    return check


def device(name: str, v: Any) -> str:
    if not isinstance(v, str) or not (v in ("auto", "cpu", "mps") or v == "cuda" or v.startswith("cuda:")):
        fail(name, v, "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return v


def check_device_available(name: str, v: str) -> None:
    """A device named explicitly must exist on this machine (checked for the scale being run)."""
    if v.startswith("cuda") and not torch.cuda.is_available():
        fail(name, v, "no CUDA device is available here; use 'auto' (CUDA when present, else CPU) or 'cpu'")
    if v.startswith("cuda:") and int(v.split(":")[1] or -1) >= torch.cuda.device_count():
        fail(name, v, f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    if v == "mps" and not torch.backends.mps.is_available():
        fail(name, v, "MPS is not available here; use 'auto' or 'cpu'")


threads = integer(0, 1024)  # 0 keeps torch's default
# Learning rates: any finite positive value up to this (a diverging one is caught by the training
# loop's NaN/inf check, with a message; what cannot be a number at all is caught here).
MAX_LR = 1e6


def param(check: Check, doc: str = "") -> Any:
    """A config field with its check and no default: its value must come from ``params.yaml``."""
    return field(metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class SectionConfig:
    """Base of every section's config: built from one section of ``params.yaml`` at one scale."""

    SECTION: ClassVar[str] = ""
    # Keys the ci/paper blocks may not override (e.g. what DVC's foreach reads).
    FIXED: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        """Cross-field checks (override); raise through :meth:`fail`."""

    def check_inputs(self) -> None:
        """External inputs (data files) checked before any work; none by default."""

    def fail(self, key: str, allowed: str) -> None:
        """Raise a :class:`ParamError` for ``key``, named as written in ``params.yaml``."""
        fail(self.key_name(key), getattr(self, key), allowed)

    def key_name(self, key: str) -> str:
        sources = getattr(self, "_sources", {})
        return f"{sources.get(key, self.SECTION)}.{key}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_values(cls, values: dict[str, Any], sources: dict[str, str] | None = None) -> Self:
        """Check every value (naming it by ``sources[key]``, the block it came from), then build."""
        sources = sources or {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields), key=str)  # keys of any YAML type
        if unknown:
            names = ", ".join(
                f"{sources.get(k, cls.SECTION)}.{short(k) if not isinstance(k, str) else k[:80]}" for k in unknown[:8]
            ) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            raise ParamError(f"unknown parameter(s) {names}; allowed: {', '.join(fields)}")
        missing = [k for k in fields if k not in values]
        if missing:
            raise ParamError(
                f"missing parameter(s) {', '.join(f'{cls.SECTION}.{k}' for k in missing)} in params.yaml "
                "(every value lives there; there are no hidden defaults)"
            )
        checked = {k: f.metadata["check"](f"{sources.get(k, cls.SECTION)}.{k}", values[k]) for k, f in fields.items()}
        cfg = cls(**checked)
        object.__setattr__(cfg, "_sources", dict(sources))
        cfg.check()
        return cfg

    @classmethod
    def load(cls, scale: str | None = None, path: str | Path = PARAMS) -> Self:
        """This section of ``params.yaml`` at ``scale`` (default: the file's ``scale`` switch).

        At the ``ci`` scale it prints :func:`ci_banner` first: the notebooks load their config
        this way, so a copy executed at ``ci`` says at its top that its verdicts are not results.
        """
        params = read_params(path)
        cfg = config_from(cls, params, scale)
        if active_scale(params, scale) == "ci":
            print(ci_banner(cls.SECTION))
        return cfg

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, checked again (e.g. a longer run derived from this one)."""
        return type(self).from_values({**self.to_dict(), **changes}, getattr(self, "_sources", {}))


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present (fast)
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_PLAIN_FLOAT = re.compile(r"[-+]?(\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN|([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?)")


class StrictLoader(_Loader):  # type: ignore[misc, valid-type]
    """YAML as a reader of ``params.yaml`` expects it: duplicate keys are errors (naming the key and
    both lines), ``1e-3`` is a number (YAML 1.2; PyYAML's 1.1 rules read it as a string), and
    integers or floats in octal (``0100``), sexagesimal (``50:00``), hex, binary or with
    underscores are refused rather than silently read as another value."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: let the constructor report it
            break
        if first is not None:
            message = f"duplicate key {short(key)} on lines {first} and {line} (only one may stay)"
            raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
        seen[key] = line
    return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)


def _plain_number(pattern: re.Pattern, kind: str, forms: str, advice: str, base: Any) -> Any:
    """A YAML scalar constructor that accepts only ``pattern``'s plain forms of a number, then
    builds it with PyYAML's own ``base`` constructor."""

    def construct(loader: Any, node: yaml.ScalarNode) -> Any:
        if not pattern.fullmatch(node.value):
            message = f"{short(node.value)} is {kind} in a form YAML reads unexpectedly ({forms}); {advice}"
            raise yaml.constructor.ConstructorError(None, None, message, node.start_mark)
        return base(loader, node)

    return construct


_construct_int = _plain_number(
    _DECIMAL_INT, "an integer", "octal, sexagesimal, hex, binary or with underscores", "write it in plain decimal",
    yaml.constructor.SafeConstructor.construct_yaml_int,
)  # fmt: skip
_construct_float = _plain_number(
    _PLAIN_FLOAT, "a number", "sexagesimal or with underscores", "write it as plain decimal or scientific notation",
    yaml.constructor.SafeConstructor.construct_yaml_float,
)  # fmt: skip


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
# YAML 1.2 floats without a dot (1e-3, 3E-3, 1e4), which YAML 1.1's resolver leaves as strings.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


MAX_BYTES = 1_000_000  # the committed params.yaml is ~20 kB; a file 50× larger is not a params file
MAX_DEPTH = 12  # nested mappings and lists: the committed file nests 5 deep (file, section, scale block, list, list)


def _check_shape(text_: str, path: Path) -> None:
    """Refuse, before anything is built, what could flood or crash the loader: nesting deeper than
    :data:`MAX_DEPTH` (PyYAML's C composer recurses per level and segfaults near 100 000; building an error
    message of a value 1 000 deep overflows Python's stack) and anchors or aliases (one alias can expand to
    gigabytes: "billion laughs"). Walks the parser's events and stops at the first excess, before any value is
    composed, so any nesting is measured safely and quickly."""
    depth = 0
    for event in yaml.parse(text_, Loader=_Loader):  # events only: libyaml keeps its own stack, never recurses
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ParamError(
                f"{path} line {line}: YAML anchors and aliases (&name, *name) are not allowed in a params file; "
                "write each value out"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ParamError(
                    f"{path} line {line}: values nested more than {MAX_DEPTH} levels deep (mappings and lists); "
                    "a params file nests at most 5"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """``params.yaml`` as a mapping; unreadable, oversized, too deeply nested, aliased or malformed files
    raise :class:`ParamError` (before their values are built)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES and path.is_file():
            raise ParamError(f"{path} holds {size:,} bytes; a params file is at most {MAX_BYTES:,}")
        text_ = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ParamError(f"no params file at {path}") from err
    except IsADirectoryError as err:
        raise ParamError(f"{path} is a directory; the params file must be a YAML file") from err
    except UnicodeDecodeError as err:
        raise ParamError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8 YAML") from err
    except OSError as err:
        raise ParamError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        _check_shape(text_, path)
        params = yaml.load(text_, Loader=StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        lines = text_.splitlines()
        bad_line = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        hint = " (that line holds a tab: YAML indents with spaces only)" if "\t" in bad_line else ""
        raise ParamError(f"{path} is not valid YAML{hint}: {err}") from err
    if not isinstance(params, dict):
        raise ParamError(f"{path} must be a mapping of sections, got {type(params).__name__}")
    return params


def active_scale(params: dict[str, Any], scale: str | None = None) -> str:
    if scale is None and "scale" not in params:
        fail("scale", None, f"is missing from params.yaml: write `scale: default` (or one of {', '.join(SCALES)})")
    scale = params["scale"] if scale is None else scale
    if not isinstance(scale, str) or scale not in SCALES:
        fail("scale", scale, f"must be one of {', '.join(SCALES)}")
    return scale


def section_values(params: dict[str, Any], section: str, scale: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of ``section`` at ``scale`` and, per key, the block that supplied it."""
    block = params.get(section)
    if not isinstance(block, dict):
        raise ParamError(f"params.yaml needs a mapping named {section!r}, got {type(block).__name__}")
    base = {k: v for k, v in block.items() if k not in OVERRIDE_BLOCKS}
    values, sources = dict(base), dict.fromkeys(base, section)
    for name in OVERRIDE_BLOCKS:
        over = block.get(name, {})
        if not isinstance(over, dict):
            raise ParamError(f"invalid parameter {section}.{name}={short(over)}: must be a mapping of overrides")
        if name == scale:
            values.update(over)
            sources.update(dict.fromkeys(over, f"{section}.{name}"))
    return values, sources


def ci_banner(section: str) -> str:
    """What a run at the ``ci`` scale says before its numbers: they test the code path, not the paper."""
    return (
        f"[ci scale] {section}: a smoke test that runs every cell in seconds on tiny data. Its numbers and "
        f"[REPRODUCED]/[NOT reproduced] lines are NOT results and may contradict them; the results are the "
        f"committed default-scale run under results/ (linked from the README), rebuilt by `dvc repro`."
    )


def load_config(cls: type[SectionConfig], scale: str | None = None, path: str | Path = PARAMS) -> Any:
    """``cls``'s section of ``path`` at ``scale`` (default: the file's ``scale`` switch), validated.

    The other scales are validated too, so an error anywhere in the section surfaces now.
    """
    return config_from(cls, read_params(path), scale)


def config_from(cls: type[SectionConfig], params: dict[str, Any], scale: str | None = None) -> Any:
    """As :func:`load_config`, from the already-read mapping ``params``."""
    scale = active_scale(params, scale)
    cfg = configs_at_every_scale(cls, params)[scale]
    if "device" in cfg.to_dict():
        check_device_available(cfg.key_name("device"), cfg.device)
    if "threads" in cfg.to_dict() and cfg.threads > (os.cpu_count() or 1) * 4:
        cfg.fail("threads", f"more than 4× this machine's {os.cpu_count()} cores would only slow training down")
    return cfg


def configs_at_every_scale(cls: type[SectionConfig], params: dict[str, Any]) -> dict[str, Any]:
    """``cls``'s section of ``params`` at each of :data:`SCALES`, each validated (a value's error names the
    block it came from); what the machine must provide (a device) is checked for the scale being run only."""
    configs = {}
    for s in SCALES:
        values, sources = section_values(params, cls.SECTION, s)
        raw = params[cls.SECTION].get(s, {}) if s in OVERRIDE_BLOCKS else {}
        for key in cls.FIXED:
            if key in raw:
                raise ParamError(
                    f"invalid parameter {cls.SECTION}.{s}.{key}: {key} is read from {cls.SECTION}.{key} by DVC "
                    f"and cannot change with the scale; set it there (dvc exp run -S '{cls.SECTION}.{key}=...')"
                )
        configs[s] = cls.from_values(values, sources)
    return configs
