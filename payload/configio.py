"""Load YAML configuration files into pydantic models with messages a person can act on.

pydantic's own errors are precise but written for programmers; an operator in a field needs to
know which file, which field, what value was there and what is allowed, in one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from payload.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _describe(error: Mapping[str, Any]) -> str:
    field = _field_path(tuple(error.get("loc", ())))
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"field '{field}': unknown key (value {value!r}); remove it or check its spelling"
    if kind == "missing":
        return f"field '{field}': required but missing; add it"
    allowed = error.get("msg", "invalid value")
    return f"field '{field}': bad value {value!r}; {allowed}"


def format_validation_error(source: str, err: ValidationError) -> str:
    """Turn a pydantic ValidationError into one message naming the file, fields, values and rules."""
    lines = [f"{source}: invalid configuration"]
    lines += [f"  - {_describe(e)}" for e in err.errors()]
    return "\n".join(lines)


def validate_config(data: Any, model: type[M], source: str = "<config>") -> M:
    """Validate already-parsed data, raising ConfigError with the readable message."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: invalid configuration\n  - the file must hold a mapping of keys to values, "
            f"not {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(source, err)) from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning every way it can be unreadable into one ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: configuration file not found; pass the path of a YAML file")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid YAML ({err}); fix the syntax") from None
    except RecursionError:  # PyYAML parses nesting recursively: "[[[[..." thousands deep
        raise ConfigError(f"{p}: not valid YAML (nested too deeply); fix the file") from None
    except OSError as err:  # a directory, a FIFO, unreadable
        raise ConfigError(f"{p}: cannot be read ({err.strerror or err}); pass the path of a YAML file") from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read a YAML file and validate it against `model`."""
    data = read_yaml(path)
    try:
        return validate_config(data, model, str(path))
    except RecursionError:  # a YAML alias that contains itself (a: &a [*a])
        raise ConfigError(f"{path}: invalid configuration (a value refers to itself through a YAML alias)") from None
