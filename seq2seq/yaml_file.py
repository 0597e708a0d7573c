"""Reading a YAML file safely: a small regular UTF-8 file, no duplicate keys, one-line errors."""

import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from seq2seq.errors import Seq2SeqError

MAX_CONFIG_BYTES = 1 << 20


def short_repr(value: Any) -> str:
    """A short one-line repr, also of huge or deeply nested values."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = 60
    try:
        return short.repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"



# libyaml's scanner limits nesting; PyYAML's own is quadratic in it, so "[[[[..." would hang.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {short_repr(key)} given twice (also at line "
                        f"{first[key]}); keep one", key_node.start_mark)
                first[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    if _SafeLoader is yaml.SafeLoader and text.count("[") + text.count("{") > 1000:
        raise yaml.error.MarkedYAMLError(problem="nested too deeply (over 1000 brackets)")
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader: no arbitrary objects


def _open_text(path: Path) -> str:
    """The UTF-8 text of a config file that exists and is a small regular file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a pipe or device would block or never end
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise Seq2SeqError(f"config {path} is {kind}; give a YAML file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise Seq2SeqError(f"config {path} is {info.st_size} bytes; a config is a small "
                               "YAML file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Seq2SeqError(f"config file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise Seq2SeqError(f"cannot read config {path}: not UTF-8 text ({error.reason} at "
                           f"byte {error.start})") from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise Seq2SeqError(f"cannot read config {path}: {reason}") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file safely, refusing duplicate keys; errors name the file and line."""
    path = Path(path)
    text = _open_text(path)
    try:
        return parse_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or "invalid YAML").split())
        raise Seq2SeqError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise Seq2SeqError(f"{path}: invalid YAML: nested too deeply") from None
    except Exception as error:  # PyYAML's constructors raise e.g. IndexError for "!!float"
        reason = " ".join(str(error).split(";")[0].split())  # ValueError: too many digits
        raise Seq2SeqError(f"{path}: invalid YAML: {reason or type(error).__name__}") from None
