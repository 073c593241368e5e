"""Read OpenClonk's C4Group archives (``.ocg``, ``.ocd``, ``.ocf``, ``.ocs``) in plain Python.

A packed group file is a gzip stream whose two magic bytes are ``1E 8C`` instead of
``1F 8B``. Decompressed, a group is::

    header   204 bytes, "scrambled": every byte XOR 0xED, then bytes 0 and 2 of each
             3-byte triple swapped; unscrambled it starts with "RedWolf Design GrpFolder"
             (24 bytes), 4 reserved bytes, int32 Ver1, int32 Ver2, int32 entry count, ...
    entries  316 bytes each (not scrambled): char name[260]; int32 packed, child_group,
             size, reserved, offset, reserved; then 32 bytes of flags and padding
    contents every entry's bytes at ``offset`` from the end of the entry table; a child
             group (``child_group`` = 1) is stored there as an uncompressed group, with its
             own scrambled header

(OpenClonk's ``src/c4group/C4Group.cpp``: ``C4GroupHeader``, ``C4GroupEntryCore``,
``MemScramble``.) An unpacked group is an ordinary folder.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path

MAGIC = b"\x1e\x8c"
GROUP_ID = b"RedWolf Design GrpFolder"
HEADER_SIZE = 204
ENTRY_SIZE = 316
SCRAMBLE_XOR = 0xED


class C4GroupError(ValueError):
    """A file is not a C4Group or is damaged; the message names the file."""


def scramble(data: bytes) -> bytes:
    """C4Group's header scrambling (its own inverse): XOR 0xED, then swap bytes 0 and 2 of
    each 3-byte triple.

    Examples
    --------
    >>> scramble(scramble(b"RedWolf")) == b"RedWolf"
    True
    """
    out = bytearray(b ^ SCRAMBLE_XOR for b in data)
    for i in range(0, len(out) - 2, 3):
        out[i], out[i + 2] = out[i + 2], out[i]
    return bytes(out)


def _entries(data: bytes, base: int, prefix: str, where: str) -> Iterator[tuple[str, bytes]]:
    header = scramble(data[base:base + HEADER_SIZE])
    if len(header) < HEADER_SIZE or not header.startswith(GROUP_ID):
        raise C4GroupError(f"{where}: no C4Group header at byte {base} ({prefix or '/'})")
    (count,) = struct.unpack_from("<i", header, 36)
    table = base + HEADER_SIZE
    contents = table + ENTRY_SIZE * count
    if count < 0 or contents > len(data):
        raise C4GroupError(f"{where}: entry table of {count} entries runs past the data")
    for k in range(count):
        core = data[table + ENTRY_SIZE * k: table + ENTRY_SIZE * (k + 1)]
        name = core[:260].split(b"\0", 1)[0].decode("latin-1")
        _packed, child, size, _r1, offset, _r2 = struct.unpack_from("<6i", core, 260)
        start = contents + offset
        if child:
            yield from _entries(data, start, f"{prefix}{name}/", where)
            continue
        if offset < 0 or size < 0 or start + size > len(data):
            raise C4GroupError(f"{where}: entry {prefix}{name} ({size} bytes at {offset}) "
                               "runs past the data")
        yield prefix + name, data[start:start + size]


def read_group(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every file of a packed C4Group, child groups included: ``(inner path, bytes)``.

    Raises
    ------
    C4GroupError
        When ``path`` is not a packed group or is truncated.
    """
    path = Path(path)
    raw = bytearray(path.read_bytes())
    if raw[:2] != MAGIC:
        raise C4GroupError(f"{path}: not a packed C4Group (starts {bytes(raw[:2]).hex()}, "
                           f"expected {MAGIC.hex()})")
    raw[:2] = b"\x1f\x8b"
    try:
        data = gzip.decompress(bytes(raw))
    except (OSError, EOFError) as exc:
        raise C4GroupError(f"{path}: damaged gzip stream ({exc})") from None
    yield from _entries(data, 0, "", str(path))


def write_group(files: dict[str, bytes | dict], path: str | Path) -> None:
    """Write a packed C4Group (nested dicts are child groups): the inverse of
    :func:`read_group`, used to test it."""

    def group(tree: dict[str, bytes | dict]) -> bytes:
        bodies = [(name, group(v) if isinstance(v, dict) else v, isinstance(v, dict))
                  for name, v in tree.items()]
        header = bytearray(HEADER_SIZE)
        header[:24] = GROUP_ID
        struct.pack_into("<3i", header, 28, 1, 2, len(bodies))
        table, offset = b"", 0
        for name, body, child in bodies:
            core = bytearray(ENTRY_SIZE)
            core[:len(name)] = name.encode("latin-1")
            struct.pack_into("<6i", core, 260, 0, int(child), len(body), 0, offset, 0)
            table += bytes(core)
            offset += len(body)
        return scramble(bytes(header)) + table + b"".join(b for _, b, _ in bodies)

    packed = bytearray(gzip.compress(group(files), mtime=0))
    packed[:2] = MAGIC
    Path(path).write_bytes(bytes(packed))
