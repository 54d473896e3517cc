"""A sampled checksum of the bytes a file source reads, which a checkpoint records and a resume compares.

A source's config describes its data by shape (rows, widths, chunks, column names), paths aside, so that files
moved elsewhere still resume; the checksum adds their values: other files of the same shape are refused, as
other in-memory arrays are (by their fingerprint). It is sampled, not read whole, so that a resume of a 5 GB
``.npy`` pair costs milliseconds (47 from disk, 4-5 cached, measured), not a pass over the files: ``BLOCKS``
blocks of ``BLOCK`` bytes in all, spread evenly over the files (at least the first and last of each), with each
file's size. A file of up to ``BLOCK`` x its share of the blocks (``BLOCKS`` divided among the files, 2 at least)
is read whole; in a larger one, a change confined to the bytes between the blocks goes unseen (as a value changed
in place in a 5 GB file would)."""
from __future__ import annotations

import hashlib
import os

BLOCK = 4096
BLOCKS = 256
#: what ``sampled_checksum`` hashes, recorded beside it: a resume compares checksums of the same rule only
CONTENTS_RULE = 1


def sampled_checksum(files) -> str:
    """Hex BLAKE2b-128 of each file's size and of blocks sampled from it, files in the order given: paths, or the
    descriptors a source reads them through (the file it reads, whatever was renamed over its name since)."""
    per_file = max(2, BLOCKS // max(len(files), 1))
    digest = hashlib.blake2b(digest_size=16)
    for file in files:
        if isinstance(file, int):
            _add_file(digest, file, per_file)
            continue
        fd = os.open(file, os.O_RDONLY)
        try:
            _add_file(digest, fd, per_file)
        finally:
            os.close(fd)
    return digest.hexdigest()


def _add_file(digest, fd: int, blocks: int) -> None:
    size = os.fstat(fd).st_size
    digest.update(size.to_bytes(8, "little"))
    for offset in _offsets(size, blocks):
        digest.update(os.pread(fd, BLOCK, offset))


def _offsets(size: int, blocks: int):
    """Where the ``blocks`` blocks of a ``size``-byte file begin: every block of a small file; in a larger one,
    evenly spaced from the first byte to the last block's."""
    if size <= BLOCK * blocks:
        return range(0, size, BLOCK)
    last = size - BLOCK
    return sorted({last * i // (blocks - 1) for i in range(blocks)})
