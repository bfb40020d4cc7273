"""``civitas audit``: hash chains verified, an aggregate's history, anchors and proofs."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from pathlib import Path

from civitas.cli.options import Commands, Handler


def audit(commands: Commands, var_default: str) -> None:
    command = commands.add_parser("audit", help="verify hash chains; show an aggregate's history")
    audits = command.add_subparsers(dest="audit", required=True)
    for register in (_verify, _upgrade, _anchor, _prove, _check_proof, _history):
        register(audits, var_default)


def _refused(handler: Handler) -> Handler:
    """A refusal (a domain error, a bad argument) said on stderr, exit code 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from civitas.errors import DomainError

        try:
            return handler(args)
        except (DomainError, ValueError) as refused:
            print(f"civitas audit: {refused}", file=sys.stderr)
            return 2

    return run


def _anchoring(handler: Handler) -> Handler:
    """A failed anchor or proof (an ``AnchorError`` is a ``ValueError``) said on stderr,
    exit code 1."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ValueError as failed:
            print(f"civitas audit {args.audit}: {failed}", file=sys.stderr)
            return 1

    return run


def _verify(audits: Commands, var_default: str) -> None:
    command = audits.add_parser(
        "verify", help="recompute the global chain and every stream's; check snapshots"
    )
    command.add_argument(
        "--service", action="append", default=[], help="repeatable (default: every service)"
    )
    command.add_argument("--var", default=var_default)
    command.add_argument(
        "--anchor",
        metavar="FILE|DIGEST",
        help="also prove the store extends these anchors: an anchors file, a signed anchor's "
        "JSON, or '<service> <tree_size> <root hex>'",
    )
    command.add_argument(
        "--public-key", default="", help="hex or PEM file (default: the local anchor key's)"
    )
    command.set_defaults(run=_refused(_run_verify))


def _run_verify(args: argparse.Namespace) -> int:
    from civitas.audit import commands

    if args.anchor:
        return _anchoring(_run_verify_with_anchor)(args)
    return asyncio.run(commands.verify(args.service, Path(args.var)))


def _run_verify_with_anchor(args: argparse.Namespace) -> int:
    from civitas.audit import anchoring, commands

    var = Path(args.var)
    verified = asyncio.run(commands.verify(args.service, var))
    anchored = asyncio.run(anchoring.verify_anchor(args.service, var, args.anchor, args.public_key))
    return verified or anchored


def _upgrade(audits: Commands, var_default: str) -> None:
    command = audits.add_parser(
        "upgrade", help="once, for a store from before the ledger: chain its history (idempotent)"
    )
    command.add_argument("--service", action="append", default=[], help="repeatable")
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_refused(_run_upgrade))


def _run_upgrade(args: argparse.Namespace) -> int:
    from civitas.audit import commands

    return asyncio.run(commands.upgrade(args.service, Path(args.var)))


def _anchor(audits: Commands, var_default: str) -> None:
    command = audits.add_parser("anchor", help="print each service's signed current digest")
    command.add_argument("--service", action="append", default=[], help="repeatable")
    command.add_argument(
        "--public-key", dest="public_key_only", action="store_true", help="print the public key"
    )
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_refused(_anchoring(_run_anchor)))


def _run_anchor(args: argparse.Namespace) -> int:
    from civitas.audit import anchoring

    return asyncio.run(anchoring.anchor(args.service, Path(args.var), args.public_key_only))


def _prove(audits: Commands, var_default: str) -> None:
    command = audits.add_parser("prove", help="a Merkle inclusion proof of one event (JSON)")
    command.add_argument("stream", help="e.g. case-<id>")
    command.add_argument("revision", type=int, help="the event's revision (0 is the first)")
    command.add_argument("--service", dest="owner", help="the store (default: by category)")
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_refused(_anchoring(_run_prove)))


def _run_prove(args: argparse.Namespace) -> int:
    from civitas.audit import anchoring

    return asyncio.run(
        anchoring.prove_event(args.stream, args.revision, args.owner, Path(args.var))
    )


def _check_proof(audits: Commands, var_default: str) -> None:
    command = audits.add_parser("check-proof", help="check a proof alone, against a digest")
    command.add_argument("proof", help="the file `civitas audit prove` wrote")
    command.add_argument("--digest", help="the published digest (default: the anchor in the proof)")
    command.add_argument(
        "--public-key", default="", help="hex or PEM file (default: the local anchor key's)"
    )
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_refused(_anchoring(_run_check_proof)))


def _run_check_proof(args: argparse.Namespace) -> int:
    from civitas.audit import anchoring

    return anchoring.check_proof_file(args.proof, args.digest, args.public_key, Path(args.var))


def _history(audits: Commands, var_default: str) -> None:
    command = audits.add_parser("history", help="an aggregate's state then, and its events")
    command.add_argument("stream", help="e.g. case-<id>, account-fund:QH-01-01:special")
    when = command.add_mutually_exclusive_group()
    when.add_argument("--as-of", help="ISO time with zone, e.g. 2026-03-01T00:00:00+08:00")
    when.add_argument("--version", type=int, help="a revision (0 is the first event)")
    command.add_argument("--service", dest="owner", help="the store (default: by category)")
    command.add_argument("--var", default=var_default)
    command.set_defaults(run=_refused(_run_history))


def _run_history(args: argparse.Namespace) -> int:
    from civitas.audit import commands

    return asyncio.run(
        commands.history(args.stream, args.as_of, args.version, args.owner, Path(args.var))
    )
