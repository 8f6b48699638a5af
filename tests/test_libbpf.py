"""The ctypes binding: struct layouts against the C headers, map, pin, link and info calls."""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import loader_fixtures
import pytest

from fwc.loader.kernel import libbpf
from fwc.loader.kernel.libbpf import KernelError
from fwc.loader.kernel.program import LoadedProgram

_counter = itertools.count()

# ctypes structure -> (C type, fields compared by offset)
LAYOUTS = {
    libbpf._TestRunOpts: ("struct bpf_test_run_opts", [f[0] for f in libbpf._TestRunOpts._fields_]),
    libbpf._LinkUpdateOpts: ("struct bpf_link_update_opts", ["sz", "flags", "old_prog_fd"]),
    libbpf._MapCreateOpts: (
        "struct bpf_map_create_opts",
        [f[0] for f in libbpf._MapCreateOpts._fields_],
    ),
    libbpf._LinkCreateOpts: (
        "struct bpf_link_create_opts",
        ["sz", "flags", "iter_info", "iter_info_len", "target_btf_id"],
    ),
    libbpf._ProgInfo: (
        "struct bpf_prog_info",
        ["type", "id", "tag", "nr_map_ids", "map_ids", "name"],
    ),
    libbpf._MapInfo: ("struct bpf_map_info", [f[0] for f in libbpf._MapInfo._fields_]),
}
CONSTANTS = ["BPF_XDP", "BPF_MAP_TYPE_ARRAY", "BPF_MAP_TYPE_PERCPU_ARRAY", "BPF_OBJ_NAME_LEN"]


def test_struct_layouts_match_the_headers(tmp_path: Path) -> None:
    """Offsets, opts sizes and enum values as the system's C compiler sees them."""
    lines = []
    for struct, (ctype, fields) in LAYOUTS.items():
        if ctype.endswith("_opts"):
            lines.append(f'printf("{struct.__name__} sizeof %zu\\n", sizeof({ctype}));')
        for name in fields:
            lines.append(f'printf("{struct.__name__} {name} %zu\\n", offsetof({ctype}, {name}));')
    for name in CONSTANTS:
        lines.append(f'printf("constant {name} %d\\n", (int){name});')
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <bpf/bpf.h>\n"
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    binary = tmp_path / "layout"
    subprocess.run([loader_fixtures.CLANG, str(source), "-o", str(binary)], check=True)
    printed = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    by_name = {s.__name__: s for s in LAYOUTS}
    for line in printed.splitlines():
        struct_name, field, value = line.split()
        if struct_name == "constant":
            assert getattr(libbpf, field) == int(value), field
            continue
        struct = by_name[struct_name]
        got = ctypes.sizeof(struct) if field == "sizeof" else getattr(struct, field).offset
        assert got == int(value), f"{struct_name}.{field}"


def test_verifier_log_extraction() -> None:
    messages = [
        "libbpf: prog 'fwc_xdp': BPF program load failed: Permission denied\n",
        "libbpf: prog 'fwc_xdp': -- BEGIN PROG LOAD LOG --\n0: R1=ctx()\nbad access\n"
        "-- END PROG LOAD LOG --\n",
        "libbpf: failed to load object\n",
    ]
    assert libbpf.verifier_log(messages) == "0: R1=ctx()\nbad access\n"
    assert libbpf.verifier_log(["libbpf: no log here\n"]) == ""


def test_open_messages_are_captured_not_printed(capfd: pytest.CaptureFixture[str]) -> None:
    with libbpf.capture_messages() as messages, pytest.raises(KernelError) as caught:
        libbpf.Object(b"\x7fELF" + bytes(60))
    assert caught.value.errno > 0
    assert any("libbpf:" in m for m in messages)
    with pytest.raises(KernelError):
        libbpf.Object(b"not elf")
    assert capfd.readouterr() == ("", "")


def test_object_without_loading_reports_maps_and_programs() -> None:
    obj = libbpf.Object(loader_fixtures.compiled("xdp_pass_count.c"))
    try:
        assert obj.program_names() == ["fwc_xdp"]
        assert obj.program_insn_count("fwc_xdp") > 0
        assert sorted(obj.maps(), key=lambda m: m.name) == [
            libbpf.MapDef("fwc_action", "array", 4, 4, 1),
            libbpf.MapDef("fwc_counters", "percpu_array", 4, 16, 2),
        ]
        with pytest.raises(KernelError, match="program 'nope' not found"):
            obj.program("nope")
    finally:
        obj.close()
        obj.close()


@pytest.mark.kernel
def test_map_calls_and_errors() -> None:
    fd = libbpf.map_create(1, "fwc_test_hash", 4, 8, 8)  # BPF_MAP_TYPE_HASH
    try:
        keys = [i.to_bytes(4, "little") for i in (3, 1, 2)]
        for n, key in enumerate(keys):
            libbpf.map_update(fd, key, (n * 10).to_bytes(8, "little"))
        assert libbpf.map_lookup(fd, keys[1], 8) == (10).to_bytes(8, "little")
        assert libbpf.map_lookup(fd, bytes(4), 8) is None
        seen, key = [], libbpf.map_next_key(fd, None, 4)
        while key is not None:
            seen.append(key)
            key = libbpf.map_next_key(fd, key, 4)
        assert sorted(seen) == sorted(keys)
        assert libbpf.map_delete(fd, keys[0]) is True
        assert libbpf.map_delete(fd, keys[0]) is False
        with pytest.raises(KernelError) as caught:
            libbpf.map_update(fd, keys[0], bytes(8), flags=2)  # BPF_EXIST on a missing key
        assert caught.value.errno == errno.ENOENT
        info = libbpf.map_info(fd)
        assert (info.name, info.type, info.key_size, info.value_size) == ("fwc_test_hash", 1, 4, 8)
        libbpf.map_freeze(fd)
        with pytest.raises(KernelError, match="map update failed: Operation not permitted"):
            libbpf.map_update(fd, keys[1], bytes(8))
    finally:
        os.close(fd)
    with open("/dev/null") as not_bpf, pytest.raises(KernelError) as caught:
        libbpf.map_info(not_bpf.fileno())
    assert caught.value.errno == errno.EINVAL
    assert str(caught.value) == "cannot read map info: Invalid argument"


@pytest.mark.kernel
def test_pins_and_ids(tmp_path: Path) -> None:
    pin = Path("/sys/fs/bpf") / f"fwc-libbpf-test-{os.getpid()}-{next(_counter)}"
    with LoadedProgram.load(loader_fixtures.build(tmp_path)) as program:
        libbpf.obj_pin(program.prog_fd, pin)
        try:
            fd = libbpf.obj_get(pin)
            by_id = libbpf.prog_get_fd_by_id(program.prog_id)
            try:
                assert libbpf.prog_info(fd).id == libbpf.prog_info(by_id).id == program.prog_id
                assert program.prog_id in libbpf.prog_ids()
                [map_id, *_] = libbpf.prog_info(fd).map_ids
                map_fd = libbpf.map_get_fd_by_id(map_id)
                os.close(map_fd)
            finally:
                os.close(fd)
                os.close(by_id)
            with pytest.raises(KernelError, match="File exists"):
                libbpf.obj_pin(program.prog_fd, pin)
        finally:
            pin.unlink()
    with pytest.raises(KernelError, match=f"cannot open pin {pin}: No such file"):
        libbpf.obj_get(pin)


@pytest.fixture
def veth_ifindex() -> Iterator[int]:
    """One end of a veth pair left down (so it carries no traffic), to attach XDP links to."""
    name = f"fwcl{os.getpid() % 100000}{next(_counter)}"
    peer = f"{name}p"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    try:
        yield int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


@pytest.mark.kernel
def test_xdp_link_create_update_detach(tmp_path: Path, veth_ifindex: int) -> None:
    xdp_flags_skb_mode = 1 << 1
    artifact = loader_fixtures.build(tmp_path)
    with LoadedProgram.load(artifact) as old, LoadedProgram.load(artifact) as new:
        link = libbpf.link_create(old.prog_fd, veth_ifindex, flags=xdp_flags_skb_mode)
        try:
            info = libbpf.link_info(link)
            assert (info.prog_id, info.ifindex) == (old.prog_id, veth_ifindex)
            with pytest.raises(KernelError) as caught:
                libbpf.link_update(link, new.prog_fd, old_prog_fd=new.prog_fd)
            assert caught.value.errno == errno.EPERM
            libbpf.link_update(link, new.prog_fd, old_prog_fd=old.prog_fd)
            assert libbpf.link_info(link).prog_id == new.prog_id
            libbpf.link_detach(link)
            assert libbpf.link_info(link).ifindex == 0
        finally:
            os.close(link)
