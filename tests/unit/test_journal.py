"""The state file: atomic replacement, shared environments stored once."""

from __future__ import annotations

import json

from pyvm2.daemon.journal import Entries, atomic_write, pack, unpack


def test_pack_stores_identical_environments_once_and_unpacks_them():
    env = {"PATH": "/bin", "SECRET": "x" * 1000}
    entries = [{"pm_id": i, "base_env": dict(env)} for i in range(100)]
    data = pack(entries, 100)
    assert len(data) < 10_000
    back, next_id = unpack(data)
    assert next_id == 100 and all(e["base_env"] == env for e in back)


def test_entries_encode_each_entry_once_per_change_and_pack_as_pack_does():
    env = {"PATH": "/bin"}
    states = {i: {"pm_id": i, "status": "online", "base_env": env} for i in range(3)}
    made: list[int] = []

    def state(i: int):
        def make() -> dict:
            made.append(i)
            return dict(states[i])
        return make

    entries = Entries()

    def packed() -> bytes:
        return entries.pack(((i, (s["status"],), state(i)) for i, s in states.items()), 7)

    assert unpack(packed()) == unpack(pack(list(states.values()), 7)) and made == [0, 1, 2]
    assert packed() == packed() and made == [0, 1, 2]
    states[1] = {**states[1], "status": "stopped"}
    procs, next_id = unpack(packed())
    assert made == [0, 1, 2, 1] and next_id == 7
    assert [p["status"] for p in procs] == ["online", "stopped", "online"]
    del states[0]
    assert [p["pm_id"] for p in unpack(packed())[0]] == [1, 2]


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


def _journal(path, logged):
    from pyvm2.daemon.journal import Journal

    return Journal(str(path), lambda: b"", logged.append)


def test_a_damaged_state_file_is_set_aside_and_the_backup_is_read(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(str(path), pack([{"pm_id": 3, "base_env": {}}], 4), keep_backup=True)
    atomic_write(str(path), pack([{"pm_id": 3, "base_env": {}}, {"pm_id": 4}], 5),
                 keep_backup=True)
    path.write_bytes(path.read_bytes()[:20])
    logged: list[str] = []
    entries, next_id = _journal(path, logged).read()
    assert [e["pm_id"] for e in entries] == [3] and next_id == 4
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("state.json.damaged-")]
    assert len(aside) == 1 and not path.exists()
    assert any("is damaged" in m for m in logged) and any("previous" in m for m in logged)


def test_the_backup_is_read_when_the_state_file_is_missing(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(str(path), pack([{"pm_id": 1}], 2), keep_backup=True)
    atomic_write(str(path), pack([{"pm_id": 1}], 2), keep_backup=True)
    path.unlink()
    entries, _ = _journal(path, []).read()
    assert [e["pm_id"] for e in entries] == [1]


def test_state_files_of_the_wrong_shape_count_as_damaged(tmp_path):
    for body in (b'{"format": 1, "procs": 5}', b'{"format": 1, "procs": ["x"]}', b"[1]",
                 b"\xff\xfe", b"[" * 100_000):
        path = tmp_path / "state.json"
        path.write_bytes(body)
        assert _journal(path, []).read() == ([], 0), body


def test_concurrent_persists_all_land_in_order(tmp_path):
    """Commands on different apps persist at once: each write lands, none trips over another's
    temporary file, and the file ends with the last state collected."""
    import asyncio

    from pyvm2.daemon.journal import Journal

    path = tmp_path / "state.json"
    counter = iter(range(10_000))

    def collect() -> bytes:
        return pack([{"pm_id": 1, "base_env": {"X": "y" * 100_000}}], next(counter))

    journal = Journal(str(path), collect, lambda m: None)

    async def main() -> None:
        await asyncio.gather(*(journal.persist() for _ in range(40)))

    asyncio.run(main())
    assert journal.error is None
    _, next_id = unpack(path.read_bytes())
    assert next_id == 39
    assert unpack((tmp_path / "state.json.bak").read_bytes())[1] == 39
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.bak"]


def test_a_state_older_than_the_one_on_disk_is_never_written(tmp_path):
    """A shutdown's flush may overtake a write still waiting for its thread: the older state
    that thread carries must not replace the newer one."""
    from pyvm2.daemon.journal import Journal

    path = tmp_path / "state.json"
    states = iter([pack([], 1), pack([], 2)])
    journal = Journal(str(path), lambda: next(states), lambda m: None)
    older = journal._collect()
    journal.flush()
    journal._put(*older)
    assert unpack(path.read_bytes())[1] == 2
