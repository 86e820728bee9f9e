"""Notebook parameters: defaults written in the notebook, overridable by ``CBIR_NB_<NAME>`` variables.

A notebook's parameters cell reads::

    P = notebook_parameters(catalogue="auto", backbones=["vgg16", "resnet50"], n_images=5000, k=10)

and prints the values in force. ``CBIR_NB_K=5`` in the environment (CI, a Kaggle secret, a shell)
makes ``P.k == 5`` without editing the notebook. Each value is parsed like its default: ``int``,
``float``, ``bool`` (``1/true/yes/on`` or ``0/false/no/off``), ``str``, or a list of strings written
comma-separated (``CBIR_NB_BACKBONES=resnet50,efficientnet_lite0``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "CBIR_NB_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def settings_file(path: str | os.PathLike) -> dict[str, str]:
    """``{NAME: value}`` of a settings file's ``NAME=value`` lines (``#`` comments and blank lines skipped),
    such as ``notebooks/test_run.env``; ValueError naming the file and line for any other line."""
    settings = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{path}, line {number}: expected NAME=value, got {line!r}")
        settings[name.strip()] = value.strip()
    return settings


def env_name(name: str) -> str:
    """The environment variable that overrides parameter ``name``: ``n_images`` → ``CBIR_NB_N_IMAGES``."""
    return ENV_PREFIX + name.upper()


def parsed_like(text: str, default: Any, name: str = "value") -> Any:
    """``text`` converted to the type of ``default``; ValueError naming ``name`` if it does not parse."""
    where = f"{env_name(name)}={text!r}"
    if isinstance(default, bool):  # before int: bool is an int subclass
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{where}: expected a boolean ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})")
    if isinstance(default, int):
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"{where}: expected an integer like {default!r}") from None
    if isinstance(default, float):
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"{where}: expected a number like {default!r}") from None
    if isinstance(default, (list, tuple)):
        if default and not all(isinstance(item, str) for item in default):
            raise TypeError(f"parameter {name!r}: only lists of strings can be set from the environment")
        return [item.strip() for item in text.split(",") if item.strip()]
    if default is None or isinstance(default, str):
        return text
    raise TypeError(f"parameter {name!r}: default of type {type(default).__name__} cannot be set from "
                    "the environment (use int, float, bool, str or a list of str)")


class Parameters(dict):
    """The parameters in force: a dict whose keys also read as attributes (``P.k``).

    ``sources[name]`` says where each value came from: ``"default"`` or the environment variable.
    """

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]):
        super().__init__(values)
        self.sources = dict(sources)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}; parameters are {sorted(self)}") from None

    def require_at_least(self, name: str, minimum: float, why: str = "") -> None:
        """Stop at the parameters cell, with a message a learner can act on, when ``self[name] < minimum``: which
        value, where it came from (the cell or ``$CBIR_NB_<NAME>``), the bound and ``why``. A later cell would
        otherwise fail on it with an error that names none of these."""
        value = self[name]
        if value >= minimum:
            return
        where = "in the parameters cell" if self.sources[name] == "default" else f"by {self.sources[name]}"
        raise ValueError(f"{name}={value!r} ({where}) must be at least {minimum}" + (f": {why}" if why else ""))

    def overridden(self) -> list[str]:
        """Names of the parameters set from the environment."""
        return [name for name, source in self.sources.items() if source != "default"]

    def table(self) -> str:
        """Plain-text table: name, value in force, where it came from."""
        rows = [("parameter", "value", "set by")]
        rows += [(name, _shown(value), self.sources[name]) for name, value in self.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "(none)"
    return repr(value) if isinstance(value, str) else str(value)


def notebook_parameters(*, show: bool = True, environ: Mapping[str, str] | None = None,
                        **defaults: Any) -> Parameters:
    """``defaults`` with each one replaced by ``$CBIR_NB_<NAME>`` when that variable is set.

    Values keep the type of their default (see the module docstring). With ``show``, the table of
    values in force is printed, so a notebook shows which settings produced its outputs.
    ``environ`` replaces ``os.environ`` (for tests).
    """
    environ = os.environ if environ is None else environ
    values, sources = {}, {}
    for name, default in defaults.items():
        variable = env_name(name)
        if variable in environ:
            values[name] = parsed_like(environ[variable], default, name)
            sources[name] = variable
        else:
            values[name] = list(default) if isinstance(default, tuple) else default
            sources[name] = "default"
    parameters = Parameters(values, sources)
    if show:
        print(parameters.table())
    return parameters
