"""`atomic.replace`, the one write-to-temp-then-rename: a failed write leaves the old file and no
temporary one; the temporary name is hidden, fixed (a killed writer's leftover is overwritten) or unique."""

from __future__ import annotations

import os

import pytest

from videolt import atomic


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_text(target, "old\n")
    mode = os.stat(target).st_mode & 0o777

    def half(tmp):
        tmp.write_text("half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.replace(target, half)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    atomic.write_text(target, "new\n")
    assert target.read_text() == "new\n" and os.stat(target).st_mode & 0o777 == mode  # the umask's, as a plain write


def test_temporary_names(tmp_path):
    seen = []
    atomic.replace(tmp_path / "a.csv", lambda tmp: (seen.append(tmp.name), tmp.write_text("x")))
    atomic.replace(tmp_path / "a.csv", lambda tmp: (seen.append(tmp.name), tmp.write_text("y")))
    for _ in range(2):
        atomic.replace(tmp_path / "a.csv", lambda tmp: (seen.append(tmp.name), tmp.write_text("z")), unique=True)
    atomic.replace(tmp_path / "c.mp4", lambda tmp: (seen.append(tmp.name), tmp.write_text("v")), suffix=".tmp.mp4")
    assert seen[:2] == [".a.csv.tmp", ".a.csv.tmp"] and seen[4] == ".c.mp4.tmp.mp4"
    assert seen[2] != seen[3] and all(s.startswith(".a.csv.") and s.endswith(".tmp") for s in seen[2:4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "c.mp4"]
