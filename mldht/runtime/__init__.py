"""The runtime of mldht: the only sockets, sleeps and task groups (anyio).

:class:`DHTNode` drives the pure core (:class:`mldht.core.node.NodeState`) on one UDP
socket; :func:`run` starts an event loop (asyncio with uvloop when installed, or trio).
"""

from __future__ import annotations

import logging

from .bootstrap import PUBLIC_ROUTERS as PUBLIC_ROUTERS
from .node import DHTNode as DHTNode
from .node import Operation as Operation
from .node import PeerIterator as PeerIterator
from .node import format_addr as format_addr
from .node import run as run

__all__ = ["PUBLIC_ROUTERS", "DHTNode", "Operation", "PeerIterator", "format_addr", "run"]

# A library stays quiet unless the application configures logging (the CLI does).
logging.getLogger("mldht").addHandler(logging.NullHandler())
