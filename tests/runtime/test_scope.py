"""A node's address scope: whether loopback and private contacts are bogons to it."""

from __future__ import annotations

import pytest

from mldht.runtime import DHTNode


@pytest.mark.parametrize(
    ("host", "bootstrap", "local"),
    [
        ("127.0.0.1", None, True),
        ("192.168.1.20", None, True),
        ("::1", [], True),
        ("45.1.2.3", None, False),  # public: loopback/private contacts are bogons
        ("0.0.0.0", None, False),  # joins the public DHT
        ("0.0.0.0", [("192.168.1.5", 6881)], None),  # a LAN network, maybe: accepted
    ],
)
def test_scope_follows_the_bind_address(
    host: str, bootstrap: list[tuple[str, int]] | None, local: bool | None
) -> None:
    node = DHTNode(bind=(host, 0), bootstrap=bootstrap)
    assert node.config.local_network is local
    assert DHTNode(bind=(host, 0), local_network=True).config.local_network is True
