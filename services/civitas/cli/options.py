"""What the command groups share: how a group registers, argument types, defaults."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from typing import TypeAlias

from civitas import catalog
from civitas.chassis.settings import from_environment
from civitas.eventkit.kafka.topics import check_namespace

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[Commands, str], None]
"""Adds one command's parser (given the ``--var`` default); the parser's ``run`` default
is the function that runs it and returns the exit code."""
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def positive_seconds(text: str) -> float:
    """An argument in seconds, above zero."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0 seconds: {text!r}")
    return seconds


def kafka_namespace(text: str) -> str:
    """A ``--namespace`` argument: a namespace's name (:func:`check_namespace`)."""
    try:
        return check_namespace(text)
    except ValueError as refused:
        raise argparse.ArgumentTypeError(str(refused)) from None


def address_of(service: str) -> str:
    """Where a service listens: ``$CIVITAS_<SERVICE>_ADDRESS``, else its local port."""
    default = f"127.0.0.1:{catalog.spec(service).grpc_port}"
    return from_environment(f"{service}_address") or default


def until_interrupted(handler: Handler) -> Handler:
    """The handler, ending quietly (exit code 0) on Ctrl-C."""

    def run(args: argparse.Namespace) -> int:
        with contextlib.suppress(KeyboardInterrupt):
            return handler(args)
        return 0

    return run


def confirmed(question: str) -> bool:
    """True only for an explicit yes typed in answer (end of input is a no)."""
    try:
        answer = input(f"{question}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}
