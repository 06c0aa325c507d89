"""The state file: atomic replacement, shared environments stored once."""

from __future__ import annotations

import json

from pyvm2.daemon.journal import atomic_write, pack, unpack


def test_pack_stores_identical_environments_once_and_unpacks_them():
    env = {"PATH": "/bin", "SECRET": "x" * 1000}
    entries = [{"pm_id": i, "base_env": dict(env)} for i in range(100)]
    data = pack(entries, 100)
    assert len(data) < 10_000
    back, next_id = unpack(data)
    assert next_id == 100 and all(e["base_env"] == env for e in back)


def test_atomic_write_keeps_a_backup_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "dump.json"
    atomic_write(str(path), b"one", keep_backup=True)
    atomic_write(str(path), b"two", keep_backup=True)
    assert path.read_bytes() == b"two"
    assert (tmp_path / "dump.json.bak").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.json", "dump.json.bak"]


def test_unpack_refuses_unknown_formats():
    import pytest

    with pytest.raises(ValueError):
        unpack(json.dumps({"format": 99}).encode())
