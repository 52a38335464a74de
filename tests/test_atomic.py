"""Atomic writes: complete or absent, never half a file; usual permissions."""

import os
import stat

import pytest

from segakit.core.atomic import atomic_open


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_existing_file_kept_until_replacement_is_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    with atomic_open(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new"


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "f", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_write_json_makes_the_folder_and_replaces_whole(tmp_path):
    import json

    from segakit.core.atomic import write_json

    path = write_json(tmp_path / "new" / "r.json", {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    write_json(path, {"b": 1})
    assert json.loads(path.read_text()) == {"b": 1} and [p.name for p in path.parent.iterdir()] == ["r.json"]
