"""The BEP 44 subcommands of ``mldht``: ``put``, ``get`` and ``kv set`` / ``kv get``
(their argument types, the checks that span several arguments, and the handlers).

Item values: ``VALUE`` on the command line is stored as a bencoded string of its UTF-8
bytes; see :mod:`mldht.cli` for how values read back are printed."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .argtypes import checked
from .cli_support import (
    Handler,
    Parser,
    UsageError,
    add_common,
    emit,
    fail,
    node_kwargs,
    note,
    oneshot_tunables,
    print_value,
    put_failed,
    unheard_hint,
)
from .core.bep44 import MAX_SEQ, KeyPair, mutable_target, parse_btpk_magnet
from .errors import InvalidArgument
from .runtime.items import (
    IDENTITY_FILE,
    as_public_key,
    as_salt,
    as_target,
    encode_value,
    kv_salt,
    load_or_create_keypair,
)
from .runtime.keys import load_keypair
from .runtime.node import DHTNode

__all__ = ["add_item_commands"]


def _utf8(text: str) -> bytes:
    """Command-line bytes that are not UTF-8 come through as given."""
    return text.encode("utf-8", "surrogateescape")


@checked
def _value_arg(text: str) -> bytes:
    """VALUE: its UTF-8 bytes, stored as a bencoded byte string; checked here to fit an
    item (1000 bytes bencoded)."""
    encode_value(_utf8(text))
    return _utf8(text)


@checked
def _salt_arg(text: str) -> bytes:
    return as_salt(_utf8(text))


@checked
def _key_arg(text: str) -> bytes:
    kv_salt(_utf8(text))
    return _utf8(text)


_pubkey_arg = checked(as_public_key)


def _seq_arg(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_SEQ:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63 - 1, got {text!r}")
    return int(text)


def _cli_keypair(args: argparse.Namespace, *, create: bool) -> KeyPair:
    """The key pair of ``--key-file``, or of the state dir (created there if ``create``)."""
    key_file: Path | None = args.key_file
    flag = "--key-file"
    if key_file is None:
        if args.state_dir is None:
            raise UsageError(
                "argument --key-file: a key pair is needed: give --key-file FILE, or "
                "--state-dir DIR to use (or create) DIR/" + IDENTITY_FILE
            )
        key_file = args.state_dir / IDENTITY_FILE
        flag = "--state-dir"
    try:
        if create:
            keypair, created = load_or_create_keypair(key_file)
            if created:
                note(f"created a new key pair in {key_file}")
            return keypair
        return load_keypair(key_file)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"argument {flag}: no key pair in {str(key_file)!r}") from None
    except OSError as exc:
        raise UsageError(
            f"argument {flag}: cannot read key file {str(key_file)!r}: {exc.strerror or exc}"
        ) from None
    except InvalidArgument as exc:
        raise UsageError(f"argument {flag}: {exc}") from None


def _check_get(args: argparse.Namespace) -> None:
    if args.mutable:
        if args.target.strip().lower().startswith("magnet:"):
            try:
                args.target, salt = parse_btpk_magnet(args.target)
            except InvalidArgument as exc:
                raise UsageError(f"argument PUBKEY: {exc}") from None
            args.salt = salt if args.salt is None else args.salt
        else:
            try:
                args.target = as_public_key(args.target)
            except InvalidArgument as exc:
                raise UsageError(f"argument PUBKEY: {exc}") from None
    else:
        if args.salt is not None:
            raise UsageError("argument --salt: only mutable items have a salt (add --mutable)")
        try:
            args.target = as_target(args.target)
        except InvalidArgument as exc:
            raise UsageError(f"argument TARGET: {exc}") from None


def _check_put(args: argparse.Namespace) -> None:
    if args.mutable:
        args.keypair = _cli_keypair(args, create=True)
        return
    for name in ("salt", "key_file", "seq", "cas"):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"argument {flag}: only mutable items have one (add --mutable)")


def _check_kv_set(args: argparse.Namespace) -> None:
    args.keypair = _cli_keypair(args, create=True)


def _check_kv_get(args: argparse.Namespace) -> None:
    args.keypair = None if args.owner is not None else _cli_keypair(args, create=False)


async def _cmd_put(args: argparse.Namespace) -> int:
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        if not args.mutable:
            done = await node.put_item(encode_value(args.value))
            if (status := put_failed(args, done)) is not None:
                return status
            emit(args, {"target": done.target.hex(), "accepted": done.accepted}, done.target.hex())
            return 0
        keypair: KeyPair = args.keypair
        salt: bytes = args.salt or b""
        done = await node.put_item(
            encode_value(args.value), keypair=keypair, salt=salt, seq=args.seq, cas=args.cas
        )
    if (status := put_failed(args, done)) is not None:
        return status
    doc = {
        "public_key": keypair.public_key.hex(),
        "target": done.target.hex(),
        "seq": done.seq,
        "salt": salt.hex(),
        "accepted": done.accepted,
    }
    emit(args, doc, f"{doc['public_key']} {doc['target']} {doc['seq']}")
    return 0


async def _cmd_get(args: argparse.Namespace) -> int:
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        if not args.mutable:
            value = await node.get_immutable(args.target)
            if value is None:
                return fail(
                    args, f"no item found for the target {args.target.hex()}{unheard_hint(node)}"
                )
            print_value(args, value, None, {"target": args.target.hex()})
            return 0
        salt: bytes = args.salt or b""
        found = await node.get_mutable(args.target, salt=salt)
        unheard = unheard_hint(node)
    if found is None:
        return fail(args, f"no mutable item found for the key {args.target.hex()}{unheard}")
    extra = {
        "public_key": args.target.hex(),
        "salt": salt.hex(),
        "target": mutable_target(args.target, salt).hex(),
    }
    print_value(args, found[0], found[1], extra)
    return 0


async def _cmd_kv_set(args: argparse.Namespace) -> int:
    keypair: KeyPair = args.keypair
    kwargs = node_kwargs(args, read_only=True)
    async with DHTNode(**kwargs, keypair=keypair, **oneshot_tunables(args)) as node:
        seq = await node.set(args.key, args.value)
    target = mutable_target(keypair.public_key, kv_salt(args.key))
    doc = {
        "key": args.key.decode("utf-8", "replace"),
        "public_key": keypair.public_key.hex(),
        "target": target.hex(),
        "seq": seq,
    }
    emit(args, doc, f"{doc['public_key']} {doc['target']} {seq}")
    return 0


async def _cmd_kv_get(args: argparse.Namespace) -> int:
    owner: bytes = args.owner if args.owner is not None else args.keypair.public_key
    salt = kv_salt(args.key)
    async with DHTNode(**node_kwargs(args, read_only=True), **oneshot_tunables(args)) as node:
        found = await node.get_mutable(owner, salt=salt)
        unheard = unheard_hint(node)
    key = args.key.decode("utf-8", "replace")
    if found is None:
        return fail(args, f"no value found for the key {key!r} of {owner.hex()}{unheard}")
    extra = {"key": key, "owner": owner.hex(), "target": mutable_target(owner, salt).hex()}
    print_value(args, found[0], found[1], extra)
    return 0


def _add_key_file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--key-file",
        type=lambda text: Path(text).expanduser(),
        metavar="FILE",
        help=f"{what} (default: {IDENTITY_FILE} in --state-dir)",
    )


def add_item_commands(
    sub: Any, command: Callable[[str, Handler, str], argparse.ArgumentParser], oneshot: str
) -> None:
    """``put``, ``get`` (BEP 44) and ``kv set`` / ``kv get``."""
    p = command("put", _cmd_put, "store a BEP 44 item and print its target" + oneshot)
    p.set_defaults(check=_check_put)
    p.add_argument(
        "value",
        type=_value_arg,
        metavar="VALUE",
        help="stored as a bencoded string of its UTF-8 bytes (at most 1000 bytes bencoded)",
    )
    p.add_argument(
        "--mutable",
        action="store_true",
        help="a mutable item signed with the key pair; prints PUBKEY TARGET SEQ",
    )
    p.add_argument("--salt", type=_salt_arg, metavar="S", help="salt (mutable; UTF-8, <= 64 bytes)")
    _add_key_file(p, "key pair to sign with, created if missing (mutable)")
    p.add_argument(
        "--seq",
        type=_seq_arg,
        metavar="N",
        help="sequence number (mutable; default: one more than the newest found)",
    )
    p.add_argument(
        "--cas", type=_seq_arg, metavar="N", help="store only if the stored seq is N (mutable)"
    )
    add_common(p, bind_default="0.0.0.0:0", timeout=True)

    p = command("get", _cmd_get, "print the value of a BEP 44 item" + oneshot)
    p.set_defaults(check=_check_get)
    p.add_argument(
        "target",
        metavar="TARGET",
        help="40 hex digits; with --mutable the public key (64 hex) or a xs=urn:btpk: magnet",
    )
    p.add_argument(
        "--mutable", action="store_true", help="get the mutable item of a public key (and salt)"
    )
    p.add_argument("--salt", type=_salt_arg, metavar="S", help="salt (mutable; UTF-8)")
    add_common(p, bind_default="0.0.0.0:0", timeout=True)

    kv = command("kv", _cmd_kv_set, "a key/value store: mutable items under your key pair")
    kv_sub = kv.add_subparsers(dest="kv_command", metavar="ACTION", parser_class=Parser)
    kv_sub.required = True

    p = kv_sub.add_parser("set", help="store VALUE under KEY" + oneshot)
    p.set_defaults(handler=_cmd_kv_set, check=_check_kv_set)
    p.add_argument(
        "key", type=_key_arg, metavar="KEY", help="the key (UTF-8; hashed if > 64 bytes)"
    )
    p.add_argument(
        "value", type=_value_arg, metavar="VALUE", help="stored as a bencoded UTF-8 string"
    )
    _add_key_file(p, "key pair to sign with, created if missing")
    add_common(p, bind_default="0.0.0.0:0", timeout=True)

    p = kv_sub.add_parser("get", help="print the value stored under KEY" + oneshot)
    p.set_defaults(handler=_cmd_kv_get, check=_check_kv_get)
    p.add_argument("key", type=_key_arg, metavar="KEY", help="the key")
    p.add_argument(
        "--owner",
        type=_pubkey_arg,
        metavar="PUBKEY",
        help="whose value (64 hex); default: the key pair of --key-file or --state-dir",
    )
    _add_key_file(p, "whose value, when --owner is not given")
    add_common(p, bind_default="0.0.0.0:0", timeout=True)
