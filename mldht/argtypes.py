"""Argument types shared by the ``mldht`` command line and the crawler (``mldht crawl``,
``tools/crawl.py``): one rule per kind of value.

Each type is a function of the text given; a bad value raises
:class:`argparse.ArgumentTypeError` with a message that names it, which argparse turns
into one ``PROG: error: argument --opt: ...`` line and exit status 2 (see :class:`Parser`).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from collections.abc import Callable
from typing import NoReturn, TypeVar

from .errors import InvalidArgument

__all__ = [
    "Addr",
    "Parser",
    "bind_address",
    "bootstrap_address",
    "checked",
    "count",
    "non_negative_number",
    "non_negative_seconds",
    "parse_hostport",
    "peer_address",
    "port",
    "positive_int",
    "positive_number",
    "positive_seconds",
]

Addr = tuple[str, int]
T = TypeVar("T")

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


class Parser(argparse.ArgumentParser):
    """Bad input gives one line, ``PROG: error: ...``, and exit status 2 (no usage text)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_hostport(text: str, *, allow_port_zero: bool = False) -> Addr:
    """Parse ``HOST:PORT`` (IPv6 as ``[::1]:6881``); raises ``ArgumentTypeError``.

    HOST is a bracketed IPv6 address, or an IPv4 address or host name: dot-separated
    labels of letters, digits, ``_`` and inner ``-`` (so ``a..b`` is not one). PORT is
    1-65535, or 0-65535 with ``allow_port_zero`` (a bind address: any free port).
    """
    low = 0 if allow_port_zero else 1
    bracketed = re.fullmatch(r"\[([^\[\]]+)\]:([0-9]+)", text)
    if bracketed is not None:
        host, port_text = bracketed.groups()
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid IPv6 address in {text!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host or not port_text.isdigit():
            raise argparse.ArgumentTypeError(f"invalid HOST:PORT {text!r}")
        if not _HOSTNAME.match(host):
            raise argparse.ArgumentTypeError(f"invalid host in {text!r}")
    number = int(port_text)
    if not low <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range ({low}-65535) in {text!r}")
    return (host, number)


def bind_address(text: str) -> Addr:
    """``HOST:PORT`` to listen on; port 0 picks a free one."""
    return parse_hostport(text, allow_port_zero=True)


def peer_address(text: str) -> Addr:
    """``HOST:PORT`` of another node (port 1-65535)."""
    return parse_hostport(text)


def bootstrap_address(text: str) -> Addr | None:
    """``HOST:PORT`` of a bootstrap node, or ``none`` (None): no router at all."""
    if text.strip().lower() == "none":
        return None
    return parse_hostport(text)


def checked(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argument type from a check that raises :class:`InvalidArgument`: the check's
    message becomes argparse's (an ``ArgumentTypeError``)."""

    def arg(text: str) -> T:
        try:
            return check(text)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    arg.__name__ = getattr(check, "__name__", "value")
    return arg


def port(text: str) -> int:
    """A port number, 1-65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {text!r}")
    return int(text)


def _number(text: str, what: str, *, zero: bool = False) -> float:
    """A finite float > 0 (>= 0 with ``zero``); the error says ``expected <what>``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """A finite number > 0 (a rate, say)."""
    return _number(text, "a positive number")


def non_negative_number(text: str) -> float:
    """A finite number >= 0 (a rate where 0 turns a limit off, say)."""
    return _number(text, "a number >= 0", zero=True)


def positive_seconds(text: str) -> float:
    """A duration: a finite number of seconds > 0."""
    return _number(text, "a positive number of seconds")


def non_negative_seconds(text: str) -> float:
    """A duration that may be 0: a finite number of seconds >= 0."""
    return _number(text, "a number of seconds >= 0", zero=True)


def positive_int(text: str) -> int:
    """A whole number >= 1 (decimal digits only)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def count(text: str) -> int:
    """A whole number >= 0 (decimal digits only)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)
