"""Write tokens (BEP 5, "get_peers"): issued in ``get_peers`` / ``get``, checked on announce / put.

A token is a keyed BLAKE2s MAC of ``token_len`` bytes over the packed IP ‖ target, keyed
with the current secret (BLAKE2 is a MAC when keyed, and CPython computes it in a fraction
of the time of ``hmac.digest(..., "sha1")``, which fetches the digest from OpenSSL on every
call: 4x, measured; a get_peers answer issues one token, an announce checks two). It is
bound to the requester's IP but not its port (BEP 5: the port of an announce may differ
from the query's), and to the target, as libtorrent does, so a token from a ``get`` for
one BEP 44 target cannot be spent on a ``put`` for another.

The secret rotates every ``rotate_every`` seconds on a fixed grid that starts when the
manager is built, and the previous secret is still accepted, so a token issued at a time
``t`` within a rotation period ``[R, R + rotate_every)`` is valid until
``R + 2 * rotate_every`` (exclusive): between 5 and 10 minutes with the default.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from hashlib import blake2s
from typing import TYPE_CHECKING

from ..errors import InvalidArgument
from .compact import ip_to_bytes

if TYPE_CHECKING:  # the core never draws randomness itself: an RNG is passed in
    import random

__all__ = ["TOKEN_LEN", "TokenManager"]

TOKEN_LEN = 8
_SECRET_LEN = 20


class TokenManager:
    """Issues and verifies write tokens from a rotating secret.

    Give exactly one source of secrets: ``secret_source`` (called for each new secret;
    it must return at least 16 bytes) or ``rng`` (20 random bytes per secret). ``now`` is
    the time the first rotation period starts. Time only advances through the ``now``
    arguments of :meth:`issue`, :meth:`verify` and :meth:`rotate`; the clock is never read.
    """

    __slots__ = (
        "_current",
        "_keyed",
        "_period_start",
        "_previous",
        "_rng",
        "_source",
        "rotate_every",
        "token_len",
    )

    def __init__(
        self,
        secret_source: Callable[[], bytes] | None = None,
        *,
        rng: random.Random | None = None,
        now: float = 0.0,
        rotate_every: float = 300.0,
        token_len: int = TOKEN_LEN,
    ) -> None:
        if (secret_source is None) == (rng is None):
            raise InvalidArgument("give exactly one of secret_source and rng")
        if not rotate_every > 0:
            raise InvalidArgument(f"rotate_every must be positive, got {rotate_every}")
        if not 4 <= token_len <= 20:
            raise InvalidArgument(f"token_len must be 4..20 bytes, got {token_len}")
        self._source = secret_source
        self._rng = rng
        self.rotate_every = rotate_every
        self.token_len = token_len
        self._period_start = now
        self._keyed: dict[bytes, blake2s] = {}  # secret -> blake2s state with that key
        self._current = self._new_secret()
        # A fresh secret, not b"": nothing issued before the manager existed may verify.
        self._previous = self._new_secret()

    def _new_secret(self) -> bytes:
        if self._rng is not None:
            return self._rng.getrandbits(8 * _SECRET_LEN).to_bytes(_SECRET_LEN, "big")
        assert self._source is not None
        secret = self._source()
        if len(secret) < 16:
            raise InvalidArgument(f"secret_source returned {len(secret)} bytes; need >= 16")
        return bytes(secret)

    def rotate(self, now: float) -> None:
        """Advance the secrets to ``now``; :meth:`issue` and :meth:`verify` call it too.

        A clock that goes backwards changes nothing.
        """
        elapsed = now - self._period_start
        if elapsed < self.rotate_every:
            return
        periods = int(elapsed // self.rotate_every)
        if periods == 1:
            self._previous = self._current
        else:
            # Two or more periods passed: every token issued so far has expired.
            self._previous = self._new_secret()
        self._current = self._new_secret()
        self._period_start += periods * self.rotate_every

    def next_deadline(self) -> float:
        """When the secret next rotates (rotation also happens lazily on use)."""
        return self._period_start + self.rotate_every

    def _mac(self, secret: bytes, ip: bytes, target: bytes) -> bytes:
        # A copy of the keyed state skips hashing the key block again (~0.4 us a MAC).
        keyed = self._keyed.get(secret)
        if keyed is None:
            if len(self._keyed) >= 4:  # only the current and previous secrets are asked for
                self._keyed.clear()
            keyed = self._keyed[secret] = blake2s(key=secret, digest_size=self.token_len)
        h = keyed.copy()
        h.update(ip + target)
        return h.digest()

    def issue(self, ip: str, target: bytes, now: float) -> bytes:
        """The token for a requester at ``ip`` (no port) asking about ``target``.

        Raises :class:`InvalidArgument` when ``ip`` is not an IP address.
        """
        return self.issue_packed(ip_to_bytes(ip, unmap=True), bytes(target), now)

    def issue_packed(self, packed: bytes, target: bytes, now: float) -> bytes:
        """:meth:`issue` for an address already packed (4 or 16 bytes, unmapped)."""
        if now - self._period_start >= self.rotate_every:
            self.rotate(now)
        return self._mac(self._current, packed, target)

    def verify(self, token: bytes, ip: str, target: bytes, now: float) -> bool:
        """Whether ``token`` was issued by us to ``ip`` for ``target`` and has not expired.

        Never raises on bad input (tokens come from the network): it returns False.
        The comparison takes constant time.
        """
        if not isinstance(token, bytes) or len(token) != self.token_len:
            return False
        try:
            packed = ip_to_bytes(ip, unmap=True)
        except InvalidArgument:
            return False
        self.rotate(now)
        target = bytes(target)
        # Evaluate both (no short-circuit) so timing does not reveal which secret matched.
        ok_current = hmac.compare_digest(token, self._mac(self._current, packed, target))
        ok_previous = hmac.compare_digest(token, self._mac(self._previous, packed, target))
        return ok_current | ok_previous
