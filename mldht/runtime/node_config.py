"""How the arguments of :class:`~mldht.runtime.node.DHTNode` become its NodeConfig: a
given ``config`` (or the defaults), the tunables given as keywords over it, and the
address family and scope (``ipv6``, ``local_network``) of the bind address unless set."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

from ..core.bep42 import is_local_ip
from ..core.config import NodeConfig

__all__ = ["address_scope", "node_config"]


def address_scope(host: str, public_routers: bool) -> bool | None:
    """``NodeConfig.local_network`` for a node bound to ``host``: True on a loopback or
    private address (a local network), False on a public one (loopback and private
    contacts are then bogons), and for the unspecified address (``0.0.0.0``, ``::``)
    False when the node joins through the public routers, else None (unknown: accepted).
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: unknown
        return None
    if ip.is_unspecified:
        return False if public_routers else None
    return is_local_ip(str(ip))


def node_config(
    config: NodeConfig | None,
    tunables: Mapping[str, object],
    host: str,
    public: bool,
    read_only: bool,
    *,
    dual: bool = False,
) -> NodeConfig:
    """``config`` (or the defaults) with ``tunables`` applied; ``ipv6`` follows the bind
    address and ``local_network`` its scope unless given (``TypeError``: unknown name).
    ``dual``: the config of one family of a dual-stack node, whose ``ipv6`` is the bind
    address's family whatever ``config`` says."""
    base = config if config is not None else NodeConfig()
    changes: dict[str, Any] = {
        "ipv6": ":" in host if dual else base.ipv6 or ":" in host,
        "read_only": base.read_only or read_only,
    }
    if base.local_network is None:
        changes["local_network"] = address_scope(host, public)
    changes.update(tunables)
    if dual:
        changes["ipv6"] = ":" in host
    return dataclasses.replace(base, **changes)
