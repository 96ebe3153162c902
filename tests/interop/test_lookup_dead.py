"""A fresh one-shot lookup does not wait out the hard timeout of dead nodes (issue 13).

A loopback swarm of 24 mldht and 6 libtorrent nodes loses a fifth of them (4 and 2) after
they were learned by all (their addresses become black holes, see ``deadswarm.py``). A
fresh read-only mldht node, whose hard query timeout is 30 s, then bootstraps from one
live node and looks each announced info-hash up. Each lookup must find the peer and end
although dead nodes were asked: had it waited for their hard timeout, it could not end
before 30 s, and the test bounds it at 20 s (a bound, not a speed figure: on loopback a
lookup takes milliseconds; ``bench/lookup_dead.py`` times it against libtorrent's).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import pytest

from mldht import DHTNode
from mldht.core.compact import Addr

from .deadswarm import build_dead_swarm
from .lt import LtNode

pytestmark = pytest.mark.interop

HARD_TIMEOUT = 30.0
BOUND = 20.0


async def test_fresh_lookup_ends_without_waiting_for_dead_nodes(
    make_lt: Callable[..., LtNode], loopback: Callable[[], Addr]
) -> None:
    async with AsyncExitStack() as stack:
        swarm = await build_dead_swarm(stack, make_lt, loopback)
        asked_dead = 0
        for i, ih in enumerate(swarm.infohashes):
            entry = swarm.ours[i % len(swarm.ours)].address
            async with DHTNode(
                bind=loopback(), bootstrap=[entry], read_only=True, query_timeout=HARD_TIMEOUT
            ) as searcher:
                with anyio.fail_after(BOUND):
                    peers = [p async for p in searcher.iter_peers(ih)]
                assert swarm.peers[ih] in peers
                assert searcher.stats["timeouts"] == 0
                asked_dead += swarm.asked_dead(searcher.address)
        # The dead were asked, and no lookup waited for them.
        assert asked_dead > 0
