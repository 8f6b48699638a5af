"""Writers of one seed into an idle-generation map: arrays (mmap or batch), images, hashes.

Each returns the digests of what the map now holds (or the bytes to digest after the flip)
and how many records it wrote.
"""

from __future__ import annotations

from fwc.loader.kernel import array_mmap, libbpf
from fwc.loader.kernel.records import join_records, split_records
from fwc.loader.live import digests as table_digests
from fwc.loader.live import hash_shadow
from fwc.loader.live.hash_diff import hash_changes
from fwc.loader.live.seen import SEEN, Pending, unchanged
from fwc.loader.reader.seeds import Buffer, SeedSpec


def write_array(
    fd: int, info: libbpf.MapInfo, seed: SeedSpec, records: Buffer, known: list[str]
) -> tuple[list[str] | Pending, int]:
    """Write an array seed: through mmap when the map allows it, else the changed chunks by
    batch. Returns the digests of what the map now holds (or the bytes to digest after the
    flip) and how many records were written."""
    if array_mmap.mmapable(info) and seed.key_size == array_mmap.KEY_SIZE:
        # against the records the idle generation is known to hold: one memory compare, and
        # only the blocks that differ are rewritten (a process that has not seen them pays
        # one digest instead); any other seed is compared with the map's real contents. The
        # digest of what was written waits until after the flip.
        data = records if isinstance(records, bytes) else bytes(records)
        if unchanged(data, known):
            return known, 0
        held = SEEN.held(known)
        if held is not None:
            patched = array_mmap.patch(fd, info, held, data, seed.value_size)
            if patched is not None:
                return Pending(data), patched.elements
        want = array_mmap.image(data, seed.value_size, info.max_entries)
        if want is not None:
            return Pending(data), array_mmap.write(fd, info, want).elements
    step = seed.key_size + seed.value_size
    digests = table_digests.chunk_digests(records, step)
    size = table_digests.CHUNK * step
    changed = b"".join(
        records[i * size : (i + 1) * size]
        for i, digest in enumerate(digests)
        if i >= len(known) or known[i] != digest
    )
    if changed:
        keys, values = split_records(changed, seed.key_size, seed.value_size)
        libbpf.map_update_batch(fd, keys, values, len(changed) // step)
    return digests, len(changed) // step


def write_image(
    fd: int, info: libbpf.MapInfo, image: bytes, known: list[str]
) -> tuple[list[str] | Pending, int]:
    """Write an image seed (the artifact holds the array's memory): nothing when the idle
    generation is known to hold it, else the 64 KiB blocks that differ from the map."""
    if unchanged(image, known):
        return known, 0
    return Pending(image), array_mmap.write(fd, info, image).elements


def write_hash(
    fd: int, seed: SeedSpec, records: Buffer, known: list[str], shadow: hash_shadow.Shadow
) -> tuple[list[str], int]:
    """Make a hash map hold exactly `records`: the changed key intervals deleted, then
    written (`hash_changes`). The old contents come from the shadow when the digests vouch
    for it, else from the map; either way they name only keys the map holds, as a batch
    delete requires (a shadow that lied fails the delete, before the flip)."""
    ks, vs = seed.key_size, seed.value_size
    digests = table_digests.chunk_digests(records, ks + vs)
    old: Buffer = shadow.records()
    if not known or table_digests.chunk_digests(old, ks + vs) != known:
        old = join_records(*libbpf.map_items(fd, ks, vs), ks, vs)
    elif digests == known:
        return digests, 0
    stale, fresh = hash_changes(old, records, ks, vs)
    libbpf.map_delete_batch(fd, stale, len(stale) // ks)
    if fresh:
        keys, values = split_records(fresh, ks, vs)
        libbpf.map_update_batch(fd, keys, values, len(keys) // ks)
    shadow.store(records)
    return digests, len(fresh) // (ks + vs)
