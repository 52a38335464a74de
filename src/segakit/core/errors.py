"""The one exception type a user can act on, and the one source of its sentences.

Library code raises :class:`UserError` for bad input (a value outside its allowed range, a missing
file, a malformed edit spec). Its message is one sentence that names the value and what is allowed.
The CLI prints it and exits with status 2, without a traceback; the HTTP API answers 400 with it.

One message, three spellings: a sentence names the thing the user typed with :func:`arg` (``arg("num_images")``),
and the name is spelled when the message is shown, the way the person who typed it wrote it: ``--num-images``
on the command line, ``num_images`` (the JSON field) in the HTTP API, ``num_images`` (the argument) in Python.
Each front end says which it is with :func:`spelling` (the CLI and the API set theirs; Python is the default).
:func:`closest` names the nearest of the allowed names for a misspelt one.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import re
from collections.abc import Iterable, Iterator

STYLES = ("python", "cli", "json")
_STYLE: contextvars.ContextVar[str] = contextvars.ContextVar("segakit_spelling", default="python")
_MARK = "\x1f"  # wraps a field name inside a message until it is spelled
_MARKED = re.compile(f"{_MARK}([a-z0-9_]+){_MARK}")

# Where a command-line flag is not the field's name with dashes (one table: the CLI's options are named here once).
CLI_FLAGS = {"fair_method": "--method", "num_captions": "--captions", "guidance_scale": "--guidance",
             "negative_prompt": "--negative", "momentum_scale": "--momentum", "concepts": "--concept",
             "edits": "--edit", "loras": "--lora", "embeddings": "--embedding", "directions": "--direction",
             "true_cfg_scale": "--true-cfg"}  # fmt: skip
# Where a JSON field of the HTTP API is not the Python argument's name.
JSON_FIELDS = {"num_captions": "captions", "guidance_scale": "guidance", "true_cfg_scale": "true_cfg"}


def arg(name: str) -> str:
    """``name`` (a Python argument / dataclass field) marked for spelling when the message is shown."""
    return f"{_MARK}{name}{_MARK}"


def spell(name: str, style: str | None = None) -> str:
    """How the user of ``style`` (default: the current front end's) wrote the field ``name``."""
    style = style or _STYLE.get()
    if style == "cli":
        return CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    if style == "json":
        return JSON_FIELDS.get(name, name)
    return name


def render(message: str, style: str | None = None) -> str:
    """``message`` with every :func:`arg` mark spelled for ``style``."""
    return _MARKED.sub(lambda m: spell(m.group(1), style), message)


def set_spelling(style: str) -> None:
    """The front end this process (or this context: a request) speaks for, from now on."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
    _STYLE.set(style)


@contextlib.contextmanager
def spelling(style: str) -> Iterator[None]:
    """Spell the messages shown inside the block for ``style`` ("cli", "json" or "python")."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
    token = _STYLE.set(style)
    try:
        yield
    finally:
        _STYLE.reset(token)


def closest(word: str, choices: Iterable[str], n: int = 2) -> str:
    """ " (the closest: 'x')" for the nearest of ``choices`` to ``word`` (spaces, dashes and case ignored), or "";
    it goes before the sentence's full stop."""
    choices = [str(c) for c in choices]
    norm = {c.lower().replace("-", "_").replace(" ", "_"): c for c in choices}
    key = str(word).lower().replace("-", "_").replace(" ", "_")
    found = difflib.get_close_matches(key, list(norm), n=n, cutoff=0.6)
    found += [k for k in norm if k.replace("_", "") == key.replace("_", "") and k not in found]
    names = list(dict.fromkeys(norm[k] for k in found))[:n]
    if not names:
        return ""
    return " (the closest: " + " or ".join(repr(x) for x in names) + ")"


class UserError(ValueError):
    """Bad input: the message names the value and what is allowed (fields marked with :func:`arg` are spelled
    for the front end that shows it)."""

    def __str__(self) -> str:
        return render(super().__str__())
