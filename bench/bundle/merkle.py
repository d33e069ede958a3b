"""The Merkle tree over a bundle's per-example rows.

A leaf is the SHA-256 of one row's canonical JSON (exactly the bytes of its line in the rows
file, newline excluded). A run's root is the Merkle tree hash of its leaves in example order
(``idx``), shaped as RFC 6962 builds it: the left subtree holds the largest power of two of
leaves below the count, and an interior node is ``SHA-256(0x01 || left || right)`` over the raw
32-byte digests. A row's JSON starts with ``{``, never with the byte 0x01, so a leaf can never be
taken for an interior node. The bundle's root is the same tree over the runs' roots in run-key
order. An empty tree's hash is the SHA-256 of nothing.

With the per-run leaf lists kept in the bundle (``rows/<key>.leaves``), a changed row is located
to its run and example; the roots in the manifest say which leaf list to trust.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY = hashlib.sha256(b"").hexdigest()


def leaf(line: bytes) -> str:
    """The leaf hash (hex) of one row's canonical JSON bytes."""
    return hashlib.sha256(line).hexdigest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaves: Sequence[str]) -> str:
    """The Merkle tree hash (hex) of hex leaf hashes, in order.

    Bottom-up pairing with an odd last node carried up a level unchanged builds exactly the RFC
    6962 tree (its left subtrees are always perfect), in O(n) without recursion."""
    if not leaves:
        return EMPTY
    level = [bytes.fromhex(h) for h in leaves]
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
