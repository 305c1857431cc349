"""One typed schema per command for its options, shared by the command line and TOML files.

Each :class:`Option` says its type, range, default and help once. :func:`add_options` turns the
list into argparse arguments (with the default shown in ``--help``) and :func:`resolve` fills
what the command line left unset from the command's table of a ``--config`` TOML file, then from
the defaults, checking every value by type and range before any work starts:

- on the command line, values are parsed from text and range-checked (``--iterations 0`` is an
  error, not "use the default");
- in TOML, types are strict: ``iterations = "four"``, ``iterations = true`` or
  ``iterations = 1.5`` are errors, as is ``no-psf = "false"`` (a string is not a boolean);
  paths are relative to the TOML file's folder; unknown keys are named with the closest known one.
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recon._files import load_toml
from recon.errors import InputError

__all__ = ["Option", "add_options", "apply_table", "resolve"]

_KINDS = ("int", "float", "str", "path", "flag", "ints3", "floats3")


@dataclass(frozen=True)
class Option:
    """One option of a command.

    Parameters
    ----------
    name : str
        Long name without dashes (``"post-filter"``): ``--post-filter`` on the command line,
        ``post-filter`` (or ``post_filter``) in TOML, ``args.post_filter`` in Python.
    kind : {"int", "float", "str", "path", "flag", "ints3", "floats3"}
        Value type; ``flag`` is a switch (``--no-psf``; TOML ``true``/``false``), ``ints3`` and
        ``floats3`` are three numbers ``Z Y X``.
    help : str
        What it does (its unit, what the default means).
    default : object, optional
        Used when neither the command line nor the TOML file gives a value; shown in ``--help``.
    minimum, maximum : float, optional
        Inclusive range of numbers; ``above`` makes the minimum exclusive (``> 0``).
    choices : tuple of str, optional
        Allowed values of a ``str`` option.
    short : str, optional
        A short flag such as ``"-o"``.
    in_config : bool
        Whether a TOML file may set it (not for the output folder or the config file itself).
    exclusive_with : tuple of str
        Names of options that may not be given together with this one.
    default_text : str, optional
        How ``--help`` describes a default that depends on the input (e.g. "by energy").
    metavar : str, optional
        The value's name in ``--help``.
    required : bool
        Must be given on the command line.
    """

    name: str
    kind: str
    help: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    choices: tuple[str, ...] | None = None
    short: str | None = None
    in_config: bool = True
    exclusive_with: tuple[str, ...] = ()
    default_text: str | None = None
    metavar: str | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments that holds the value (``-`` becomes ``_``)."""
        return self.name.replace("-", "_")

    @property
    def flag_name(self) -> str:
        """The command-line flag, ``--name``."""
        return f"--{self.name}"

    # ----------------------------------------------------------------------- value checks

    def check_number(self, value: float, where: str) -> None:
        """Raise InputError when ``value`` is outside the option's range."""
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where} must be a finite number, got {value}")
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.above else value < low):
            relation = ">" if self.above else ">="
            raise InputError(f"{where} must be {relation} {_num(low)}, got {_num(value)}")
        if high is not None and value > high:
            raise InputError(f"{where} must be <= {_num(high)}, got {_num(value)}")

    def check_choice(self, value: str, where: str) -> None:
        """Raise InputError when ``value`` is not one of the option's choices (if it has any).

        ``where`` names the value in the message (the flag or the configuration key).
        """
        if self.choices is not None and value not in self.choices:
            raise InputError(f"{where} must be one of {', '.join(self.choices)}; got {value!r}")

    def parse_text(self, text: str) -> Any:
        """A command-line value (text) converted and checked; raises InputError."""
        where = self.flag_name
        if self.kind in ("int", "ints3"):
            try:
                value: Any = int(text)
            except ValueError:
                raise InputError(f"{where} takes whole numbers, got {text!r}") from None
            self.check_number(value, where)
        elif self.kind in ("float", "floats3"):
            try:
                value = float(text)
            except ValueError:
                raise InputError(f"{where} takes a number, got {text!r}") from None
            self.check_number(value, where)
        else:
            value = text
            if self.kind == "str":
                self.check_choice(value, where)
            elif not value:
                raise InputError(f"{where} needs a path, got an empty string")
        return value

    def from_toml(self, value: Any, where: str, folder: Path) -> Any:
        """A TOML value checked strictly by type and range; paths made relative to ``folder``."""
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise InputError(f"{where} must be true or false (no quotes), got {value!r}")
            return value
        if self.kind in ("ints3", "floats3"):
            if not isinstance(value, list) or len(value) != 3:
                raise InputError(f"{where} must be a list of 3 numbers [z, y, x], got {value!r}")
            return [self._toml_number(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if self.kind in ("int", "float"):
            return self._toml_number(value, where)
        if not isinstance(value, str):
            raise InputError(f"{where} must be a string (in quotes), got {value!r}")
        if self.kind == "path":
            if not value:
                raise InputError(f"{where} needs a path, got an empty string")
            path = Path(value).expanduser()
            return str(path if path.is_absolute() else folder / path)
        self.check_choice(value, where)
        return value

    def _toml_number(self, value: Any, where: str) -> Any:
        integer = self.kind in ("int", "ints3")
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "a whole number" if integer else "a number"
            raise InputError(f"{where} must be {kind}, got {value!r}")
        if integer and not isinstance(value, int):
            raise InputError(f"{where} must be a whole number, got {value!r}")
        self.check_number(value, where)
        return value

    def help_text(self) -> str:
        """The ``--help`` text: the help, the choices and the default."""
        text = self.help
        if self.choices and self.kind == "str":
            text += f" ({', '.join(self.choices)})"
        if self.default_text is not None:
            text += f" (default: {self.default_text})"
        elif self.default is not None and self.kind != "flag":
            shown = (
                " ".join(map(str, self.default)) if isinstance(self.default, list) else self.default
            )
            text += f" (default: {shown})"
        return text.replace("%", "%%")


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _argparse_type(option: Option) -> Any:
    def convert(text: str) -> Any:
        try:
            return option.parse_text(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(
                str(exc).removeprefix(f"{option.flag_name} ")
            ) from None

    convert.__name__ = option.kind  # argparse names the type in some messages
    return convert


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to ``parser``; every default is None so that TOML can fill it."""
    for option in options:
        flags = [option.short, option.flag_name] if option.short else [option.flag_name]
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help_text(), "default": None}
        if option.required:
            kwargs["required"] = True
        if option.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _argparse_type(option)
            if option.kind in ("ints3", "floats3"):
                kwargs["nargs"] = 3
                kwargs["metavar"] = ("Z", "Y", "X")
            elif option.metavar:
                kwargs["metavar"] = option.metavar
            elif option.choices and option.kind == "str":
                kwargs["metavar"] = "{" + ",".join(option.choices) + "}"
        parser.add_argument(*flags, **kwargs)


def resolve(
    args: argparse.Namespace, options: Sequence[Option], section: str
) -> argparse.Namespace:
    """Fill unset options from ``[section]`` of ``args.config`` (if any), then from defaults.

    Raises
    ------
    InputError
        Unreadable or malformed TOML, an unknown key, a value of the wrong type or out of range,
        or two options that exclude each other.
    """
    from_file: set[str] = set()
    config = getattr(args, "config", None)
    if config is not None:
        path = Path(config)
        document = load_toml(path)
        if section not in document:
            tables = ", ".join(f"[{k}]" for k, v in document.items() if isinstance(v, dict))
            raise InputError(
                f"{path}: no [{section}] table"
                + (f" (it has {tables})" if tables else "")
                + f"; put the {section} options under [{section}]"
            )
        table = document[section]
        if not isinstance(table, dict):
            raise InputError(f"{path}: [{section}] must be a table of options")
        from_file |= apply_table(args, options, table, f"{path}: [{section}]", path.parent)
    for option in options:
        if getattr(args, option.dest, None) is None and option.default is not None:
            setattr(args, option.dest, option.default)
    _check_exclusive(args, options, from_file)
    return args


def apply_table(
    args: argparse.Namespace,
    options: Sequence[Option],
    table: dict[str, Any],
    where: str,
    folder: Path,
    known_extra: Sequence[str] = (),
) -> set[str]:
    """Set the options that ``args`` leaves unset (None) from a TOML ``table``, strictly checked.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments; values already set (the command line) win over the table's.
    options : sequence of Option
        The command's options.
    table : dict
        Option name (long name, ``-`` or ``_``) -> TOML value.
    where : str
        Names the table in messages (``"FILE: [spect]"``).
    folder : Path
        Relative paths in the table are relative to this folder.
    known_extra : sequence of str
        Other keys the caller handles itself; only offered as suggestions for unknown keys.

    Returns
    -------
    set of str
        The destinations (``args`` attributes) set from the table.

    Raises
    ------
    InputError
        An unknown key (naming the closest known one), or a value of the wrong type or range.
    """
    by_key = {option.dest: option for option in options}
    taken: set[str] = set()
    for key, value in table.items():
        option = by_key.get(str(key).replace("-", "_"))
        here = f"{where} {key}"
        if option is None or not option.in_config:
            known = [o.name for o in options if o.in_config] + list(known_extra)
            close = difflib.get_close_matches(str(key).replace("_", "-"), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise InputError(f"{here}: unknown option{hint}")
        if getattr(args, option.dest, None) is None:
            setattr(args, option.dest, option.from_toml(value, here, folder))
            taken.add(option.dest)
    return taken


def _check_exclusive(
    args: argparse.Namespace, options: Iterable[Option], from_file: set[str]
) -> None:
    by_name = {option.name: option for option in options}
    for option in options:
        for other_name in option.exclusive_with:
            other = by_name[other_name]
            if _given(args, option) and _given(args, other):
                where = [
                    f"{o.name} (from the config file)" if o.dest in from_file else o.flag_name
                    for o in (option, other)
                ]
                raise InputError(f"{where[0]} and {where[1]} cannot be used together; give one")


def _given(args: argparse.Namespace, option: Option) -> bool:
    value = getattr(args, option.dest, None)
    return value is not None and value is not False and value != option.default
