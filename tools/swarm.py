"""A local DHT swarm: N mldht nodes in one process, on distinct loopback addresses.

A program around :class:`mldht.Testnet`: each node gets its own 127.x.y.z address (every
127/8 address works on Linux loopback without configuration), so per-IP rules (rate
limits, one node per IP) behave as on a real network. Node 0 starts alone; every later
node bootstraps from a few nodes started before it, chosen with a seeded RNG. Then M
random info-hashes are announced from random nodes, and the swarm serves until its run
time ends.

As a program::

    python tools/swarm.py --nodes 300 --infohashes 1000 --duration 600

prints ``bootstrap HOST:PORT`` once the swarm is ready (point ``tools/crawl.py
--bootstrap`` at it), then serves for ``--duration`` seconds or until Ctrl-C.

As a library, use :class:`mldht.Testnet`::

    async with mldht.Testnet(300, infohashes=1000, seed=1) as net:
        print(net.bootstrap_address)

Uses the public API of mldht only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc

from mldht import MldhtError
from mldht.argtypes import Parser, count, positive_int, positive_seconds
from mldht.runtime import format_addr, run
from mldht.testnet import DEFAULT_PREFIX, Testnet, TestnetError, loopback_host

__all__ = ["Swarm", "SwarmError", "add_arguments", "main", "swarm_host"]

DEFAULT_SAMPLE_INTERVAL = 10
"""The program's BEP 51 interval: short, so a crawl of a test swarm can sample twice."""

# The swarm is mldht.Testnet; these names stay for the benchmarks that import this file.
Swarm = Testnet
SwarmError = TestnetError
swarm_host = loopback_host


# ------------------------------------------------------------------------ program


def _prefix(text: str) -> str:
    parts = text.split(".")
    if len(parts) != 2 or parts[0] != "127" or not parts[1].isdigit() or int(parts[1]) > 255:
        raise argparse.ArgumentTypeError(f"expected 127.N (N in 0-255), got {text!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The swarm's options, for this program or a ``swarm`` subcommand."""
    parser.add_argument(
        "--nodes", type=positive_int, default=100, metavar="N", help="nodes (default 100)"
    )
    parser.add_argument(
        "--infohashes",
        type=count,
        default=0,
        metavar="M",
        help="random info-hashes to announce (default 0)",
    )
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="serve this long once ready, then exit (default 600)",
    )
    parser.add_argument(
        "--seed", type=count, default=0, help="seed of the swarm's random choices (default 0)"
    )
    parser.add_argument(
        "--prefix",
        type=_prefix,
        default=DEFAULT_PREFIX,
        help=f"addresses are PREFIX.x.y (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--sample-interval",
        type=count,
        default=DEFAULT_SAMPLE_INTERVAL,
        metavar="SECONDS",
        help=(
            "BEP 51 interval the nodes give, after which a crawler may sample them again "
            f"(default {DEFAULT_SAMPLE_INTERVAL}; real nodes use 21600)"
        ),
    )
    parser.add_argument(
        "--ready-timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="give up if the swarm is not formed by then (default: 120, or 0.1 s per node)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="swarm.py",
        description="Run a local DHT swarm of mldht nodes on loopback addresses.",
    )
    add_arguments(parser)
    return parser


def _print(line: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        print(line, flush=True)


async def serve(args: argparse.Namespace) -> int:
    """Build the swarm, print its bootstrap address, serve until the time or a signal."""
    tunables: dict[str, Any] = {"sample_interval": args.sample_interval}
    started = time.monotonic()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with Testnet(
            args.nodes,
            infohashes=args.infohashes,
            seed=args.seed,
            prefix=args.prefix,
            ready_timeout=args.ready_timeout,
            **tunables,
        ) as swarm:
            boot = format_addr(swarm.bootstrap_address)
            info = swarm.summary()
            info["ready_after_s"] = round(time.monotonic() - started, 2)
            if args.json:
                _print(json.dumps({"event": "ready", **info}))
            else:
                _print(f"bootstrap {boot}")
                _print(
                    f"{info['nodes']} nodes, {info['infohashes']} info-hashes announced "
                    f"({info['announces_accepted']} stores), ready in {info['ready_after_s']} s"
                )
            with anyio.move_on_after(args.duration):
                async for _ in signals:
                    break
    _print(json.dumps({"event": "stopped"}) if args.json else "stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the swarm program; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(serve, args)
    except KeyboardInterrupt:
        return 130
    except (MldhtError, OSError) as exc:
        sys.stderr.write(f"swarm.py: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
