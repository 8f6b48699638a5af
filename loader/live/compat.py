"""Whether a new artifact can replace a live tables policy in place, and if not, why."""

from __future__ import annotations

from fwc.artifact.layout import GENERATIONS, generation_base, generation_map
from fwc.artifact.manifest import Manifest, MapEntry
from fwc.loader.live.digest import program_sha256
from fwc.loader.reader.artifact import ArtifactSpec


def can_update_in_place(live: Manifest, new_spec: ArtifactSpec) -> tuple[bool, str]:
    """Whether `new_spec` can replace the live tables without a reload; else why not."""
    new = new_spec.manifest
    for label, strategy in (("live", live.strategy), ("new", new.strategy)):
        if strategy != "tables":
            return False, f"the {label} policy uses strategy {strategy!r}, not 'tables'"
    if live.interface_classes != new.interface_classes:
        # fwc_ifaces is not a generation table: its classes must mean the same on both sides
        return False, "the rules' interface patterns differ (fwc_ifaces holds their classes)"
    if live.dry_run != new.dry_run:
        return False, "the dry-run switch differs (it is compiled into the program)"
    live_digest = live.fw_load.program_sha256 if live.fw_load else None
    if not live_digest:
        return False, "the live manifest records no program digest (applied by an older fw-load)"
    if program_sha256(new_spec.obj, new_spec.section) != live_digest:
        return False, "the program differs from the live one"
    live_maps = {m.name: m for m in live.maps}
    why = _maps_differ(live_maps, {m.name: m for m in new.maps})
    if why is None:
        why = _seeds_do_not_fit(live_maps, new_spec)
    if why is None:
        why = _counters_do_not_fit(live, live_maps, new_spec)
    return why is None, why or ""


def _maps_differ(live: dict[str, MapEntry], new: dict[str, MapEntry]) -> str | None:
    if set(live) != set(new):
        return f"the maps differ ({', '.join(sorted(set(live) ^ set(new)))})"
    for name, spec in new.items():
        have = live[name]
        if (have.type, have.key_size, have.value_size) != (
            spec.type,
            spec.key_size,
            spec.value_size,
        ):
            return f"map {name} changes its type, key or value size"
    return None


def _seeds_do_not_fit(live: dict[str, MapEntry], new_spec: ArtifactSpec) -> str | None:
    for seed in new_spec.seeds:
        base = generation_base(seed.map)
        for generation in GENERATIONS:
            target = None if base is None else generation_map(base, generation)
            if target is None or target not in live:
                return f"seed of map {seed.map} is not a generation-0 table"
            if seed.count > live[target].max_entries:
                return (
                    f"map {target} holds {live[target].max_entries} entries, "
                    f"the new policy needs {seed.count}"
                )
    return None


def _counters_do_not_fit(
    live: Manifest, live_maps: dict[str, MapEntry], new_spec: ArtifactSpec
) -> str | None:
    if live.counters.map != new_spec.counters_map:
        return "the counters map differs"
    have = live_maps[live.counters.map].max_entries
    if len(new_spec.counter_slots) > have:
        return f"the counters map would grow from {have} to {len(new_spec.counter_slots)} slots"
    return None
