import json
import subprocess
import sys
import pytest

from tests.lists import official_labels, small_lists
from videolt.cli import main

OFFICIAL = official_labels()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videolt", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official label lists not available")
def test_labels_json_official():
    r = run_cli("labels", str(OFFICIAL), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["splits"] == {"train": 179334, "val": 25619, "test": 51239}
    assert s["classes"] == 1004 and s["invalid_ids"] == 162
    assert s["groups"] == {"head": 47, "medium": 617, "tail": 340}


def test_malformed_line_exits_2_naming_file_and_line(tmp_path):
    root = small_lists(tmp_path / "l")
    lines = (root / "train.lst").read_text().splitlines()
    lines[3] = lines[3].replace(" ", "\t")
    (root / "train.lst").write_text("\n".join(lines) + "\n")
    r = run_cli("labels", str(root))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"videolt labels: error: {root / 'train.lst'}:4: ")
    r = run_cli("init", str(tmp_path / "wd"), "--labels", str(root))
    assert r.returncode == 2 and "train.lst:4:" in r.stderr


def test_init_and_status(tmp_path, capsys):
    root = small_lists(tmp_path / "l")
    assert main(["init", str(tmp_path / "wd"), "--labels", str(root)]) == 0
    assert "22 videos" in capsys.readouterr().out
    assert main(["status", str(tmp_path / "wd"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["videos"] == 22
    assert s["download"]["done"] == 0 and s["download"]["pending"] == 22 and s["download"]["failed"] == {}
    assert s["features"] == {}
    assert main(["status", str(tmp_path / "wd")]) == 0
    assert "download" in capsys.readouterr().out


def test_status_of_non_workdir_and_unknown_option(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not a videolt workdir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["status", str(tmp_path), "--bogus"])
    assert e.value.code == 2
