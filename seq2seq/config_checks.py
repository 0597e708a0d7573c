"""Checks behind the config: a YAML value against its dataclass annotation, a number against
its interval, a duration such as "1h30m"; each failure is one Seq2SeqError naming the key.

Generic over any frozen dataclass, so config.py keeps only the sections and their ranges.
"""

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal

from seq2seq.errors import Seq2SeqError
from seq2seq.yaml_file import short_repr as _show


def require(ok: Any, key: str, message: str) -> None:
    if not ok:
        raise Seq2SeqError(f"{key} {message}")


def within(section: Any, name: str, **intervals: str) -> None:
    """Check keys against intervals written "[1, 65_536]" or "(0, 1)"; tuples per element."""
    for key, interval in intervals.items():
        value = getattr(section, key)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise Seq2SeqError(f"{name}.{key} must be a finite number, got {item}")
            if not _inside(item, interval):
                raise Seq2SeqError(f"{name}.{key} must be {_words(interval)}, got {_show(item)}")


def _inside(value: Any, interval: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return above and below


def _words(interval: str) -> str:
    """"(0, 65_536]" -> "> 0 and <= 65_536"."""
    low, high = (bound.strip() for bound in interval[1:-1].split(","))
    return (f"{'>' if interval[0] == '(' else '>='} {low} and "
            f"{'<' if interval[-1] == ')' else '<='} {high}")


def describe(value: Any) -> str:
    return "null (no value)" if value is None else f"{type(value).__name__} {_show(value)}"


def parse_duration(text: str) -> float:
    """'90s', '60m', '1h30m', '2h' or a bare number of seconds -> seconds; '' or 0 -> 0."""
    text = str(text).strip()
    if not text:
        return 0.0
    if re.fullmatch(r"\d{1,12}(\.\d{1,12})?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d{1,12})h)?(?:(\d{1,12})m)?(?:(\d{1,12})s)?", text)
    if not match or not any(match.groups()):
        raise Seq2SeqError(f"train.max_time: cannot read {_show(text)}; write e.g. 90s, 60m or "
                           "1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return value converted to annotation's type, or raise naming `where`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, typing.get_args(annotation), where)
    if dataclasses.is_dataclass(annotation):
        return build_entry(annotation, value, where)
    if origin is tuple and typing.get_args(annotation)[-1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise Seq2SeqError(f"{where}: expected a list, got {describe(value)}")
        item = typing.get_args(annotation)[0]
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        choices = typing.get_args(annotation)
        if isinstance(value, bool) or value not in choices:
            raise Seq2SeqError(f"{where}: {_show(value)} is not one of {', '.join(choices)}")
        return value
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise Seq2SeqError(
                f"{where}: expected a list of {len(args)} values, got {describe(value)}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args, strict=True))
    if annotation is float:
        return _to_float(value, where)
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return str(value)  # e.g. max_time: 3600
        except ValueError:  # an int past Python's digit limit
            raise Seq2SeqError(f"{where}: expected str, got {describe(value)}") from None
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        hint = "; write a whole number such as 8000" if annotation is int else ""
        raise Seq2SeqError(
            f"{where}: expected {annotation.__name__}, got {describe(value)}{hint}")
    return value


def _check_union(value: Any, choices: tuple, where: str) -> Any:
    """A value of `str | Mapping-dataclass | tuple[...]`: a list goes to the tuple type, a
    mapping to the dataclass, anything else (a prefix, a number) to str."""
    def pick(test) -> Any:
        return next((c for c in choices if test(c)), None)

    if isinstance(value, (list, tuple)):
        chosen = pick(lambda c: typing.get_origin(c) is tuple)
    elif isinstance(value, dict):
        chosen = pick(dataclasses.is_dataclass)
    else:
        chosen = pick(lambda c: c is str)
    if chosen is None:
        names = [("a list" if typing.get_origin(c) is tuple else
                  "a mapping" if dataclasses.is_dataclass(c) else c.__name__) for c in choices]
        raise Seq2SeqError(f"{where}: expected {' or '.join(names)}, got {describe(value)}")
    return _check_type(value, chosen, where)


def build_entry(cls: type, values: Any, where: str) -> Any:
    """A nested dataclass (such as a corpus mapping) from a mapping, each key type-checked."""
    if not isinstance(values, dict):
        raise Seq2SeqError(f"{where}: expected a mapping of keys to values, got "
                           f"{describe(values)}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise unknown_key(str(key), valid, where)
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def _to_float(value: Any, where: str) -> float:
    """An int, a float or a numeric string (YAML 1.1 reads 1e-3 as a string) -> float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Seq2SeqError(f"{where}: expected float, got {describe(value)}")
    try:
        return float(value)
    except OverflowError:
        raise Seq2SeqError(f"{where}: {_show(value)} is too large for a float") from None
    except ValueError:
        raise Seq2SeqError(f"{where}: expected float, got str {_show(value)}; write a number "
                           "such as 0.001 or 1.0e-3") from None


def unknown_key(key: str, valid: list[str], where: str) -> Seq2SeqError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return Seq2SeqError(f"{where}: unknown key {_show(key)}{hint}")
