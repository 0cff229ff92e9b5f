"""Issue 23 (one line, early checks, readable numbers): every error a user can reach is one line with
its exit code (2 for the user's input, 1 for a runtime failure), the traceback of an unexpected one
goes to WORKDIR/logs/videolt.log, a run or a grid that would fail is refused before anything is
trained, and every number is strict JSON or says n/a.

Most tests call `videolt.cli.main` in this process on a copy of one small synthetic workdir with
three short runs trained once for the module.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.lists import write_lists
from tests.synthetic import make_workdir
from videolt import cli
from videolt.data.labels import load_labels
from videolt.data.store import FeatureStore
from videolt.data.workdir import Workdir

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def _strict(text: str):
    """json.loads that refuses NaN and Infinity, as every strict JSON reader does."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _errors(err: str) -> list[str]:
    """stderr without log records (INFO/WARNING lines from logging) and progress bars."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "WARNING "))]


def _one_line(capsys, command: str) -> str:
    """The command's single error line (asserting there is exactly one, and no traceback)."""
    err = capsys.readouterr().err
    lines = _errors(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"videolt {command}: error: ") and "Traceback" not in err
    return lines[0]


def _train(wd: Path, run: str, *extra: str) -> int:
    return cli.main(["train", str(wd), "--features", "syn", "--run", run, "--epochs", "1", "--batch-size", "16",
                     "--set", "workers=0", "--no-progress", *extra])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A synthetic workdir (8 classes; 500/100 leaves head and medium empty) with runs trained once:
    `small` and `focal` with thresholds that fill every group, `default` with the default 500/100."""
    root, syn = make_workdir(tmp_path_factory.mktemp("errors"), num_classes=8, videos=(64, 16, 32), dim=16,
                             frames=8, seed=3)
    groups = ["--set", f"group_head={syn.head}", "--set", f"group_tail={syn.tail}"]
    assert _train(root, "small", *groups) == 0
    assert _train(root, "focal", "--method", "focal", *groups) == 0
    assert _train(root, "default") == 0
    return root, syn


@pytest.fixture
def wd(base, tmp_path) -> Path:
    """A private copy of the base workdir, for tests that damage it."""
    return Path(shutil.copytree(base[0], tmp_path / "wd"))


# -- one line, always -----------------------------------------------------------------------------

@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "malformed"),
    (lambda p: p.write_bytes(b"not a database " * 300), "not a database"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
], ids=["truncated", "garbage", "empty"])
def test_a_damaged_manifest_is_one_line_exit_1_and_its_traceback_is_logged(wd, capsys, damage, says):
    damage(wd / "manifest.sqlite")
    capsys.readouterr()
    for command in (["status", str(wd)], ["train", str(wd), "--features", "syn", "--run", "new"]):
        assert cli.main(command) == 1
        line = _one_line(capsys, command[0])
        assert "manifest.sqlite" in line and says in line and "--restore-manifest" in line
    log = (wd / "logs" / "videolt.log").read_text()
    entries = [e for e in log.split("\n--- ") if e.strip()]
    assert len(entries) == 2 and all("Traceback" in e for e in entries)
    assert "sqlite3." in log and "videolt status" in log
    assert not (wd / "runs" / "new").exists()


def test_an_unexpected_error_is_one_line_with_its_traceback_in_the_log(wd, capsys, monkeypatch):
    def broken(*_a, **_k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("videolt.data.status.workdir_status", broken)
    assert cli.main(["status", str(wd)]) == 1
    assert _one_line(capsys, "status") == (f"videolt status: error: internal error: ZeroDivisionError: a bug "
                                           f"(traceback in {wd / 'logs' / 'videolt.log'})")
    assert "ZeroDivisionError: a bug" in (wd / "logs" / "videolt.log").read_text()
    # No workdir to log into: the line says how to see the traceback, and -v shows it
    monkeypatch.setattr("videolt.data.labels.summary", broken)
    assert cli.main(["labels", str(wd / "labels")]) == 1
    assert _one_line(capsys, "labels").endswith("(videolt -v ... prints the traceback)")
    assert cli.main(["-v", "labels", str(wd / "labels")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].endswith("(traceback above)")


def _edit_manifest_labels(wd: Path) -> None:
    db = sqlite3.connect(wd / "manifest.sqlite")
    with db:
        db.execute("UPDATE videos SET labels = '2,x' WHERE idx = 5")
    db.close()


def _write_garbage(path: Path) -> None:
    path.write_text("{not json")


CASES = [  # (name, damage(wd), argv(wd), exit code, what the line says)
    ("manifest labels not integers", _edit_manifest_labels, lambda w: ["status", w], 2, "(index 5) has labels '2,x'"),
    ("no manifest", lambda w: (w / "manifest.sqlite").unlink(), lambda w: ["status", w], 1, "--restore-manifest"),
    ("no manifest, no backup", lambda w: [(w / n).unlink() for n in ("manifest.sqlite", "manifest.sqlite.bak")],
     lambda w: ["status", w], 2, "no manifest"),
    ("init over a file", None, lambda w: ["init", w / "videolt.json", "--labels", w / "labels"], 2, "a file, not a folder"),
    ("metrics.json not JSON", lambda w: _write_garbage(w / "runs/focal/metrics.json"),
     lambda w: ["report", w, "--runs", "small", "focal"], 2, "metrics.json: not readable JSON"),
    ("per_class_ap.csv not ours", lambda w: (w / "runs/focal/per_class_ap.csv").write_text("a,b\n1,2\n"),
     lambda w: ["report", w, "--runs", "small", "focal"], 2, "per_class_ap.csv: not a per-class AP table"),
    ("scores of another shape", lambda w: np.save(w / "runs/focal/scores_test.npy", np.zeros((3, 2), np.float32)),
     lambda w: ["report", w, "--runs", "small", "focal"], 2, "scores_test.npy: scores of shape (3, 2) do not match"),
    ("rows not an array", lambda w: (w / "runs/focal/rows_test.npy").write_bytes(b"garbage"),
     lambda w: ["report", w, "--runs", "small", "focal"], 2, "rows_test.npy: not a readable array"),
    ("labels thresholds reversed", None, lambda w: ["labels", w / "labels", "--head", "3", "--tail", "9"], 2,
     "expected 0 <= tail <= head"),
    ("report --out is a file", None, lambda w: ["report", w, "--runs", "small", "focal", "--out", w / "videolt.json"],
     2, "a file; name a folder"),
    ("availability --csv is a folder", None, lambda w: ["availability", w, "--csv", w / "runs"], 2, "a folder"),
    ("config.json not ours", lambda w: (w / "runs/small/config.json").write_text("[]"),
     lambda w: ["evaluate", w, "--run", "small"], 2, "config.json: not a JSON object"),
    ("zarr metadata damaged", lambda w: _write_garbage(w / "features/syn.zarr/zarr.json"),
     lambda w: ["train", w, "--features", "syn", "--run", "x"], 2, "not a readable feature set"),
    ("group thresholds reversed", None,
     lambda w: ["train", w, "--features", "syn", "--run", "x", "--set", "group_head=3", "--set", "group_tail=9"], 2,
     "expected 0 <= group_tail <= group_head"),
    ("label list not UTF-8", lambda w: (w / "labels/test.lst").write_bytes(b"\xe9t\xe9 1\n"),
     lambda w: ["status", w], 2, "test.lst:1: not UTF-8 text"),
]


@pytest.mark.parametrize("name, damage, argv, code, says", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(wd, capsys, name, damage, argv, code, says):
    if damage:
        damage(wd)
    before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
    capsys.readouterr()
    args = [str(a) for a in argv(wd)]
    assert cli.main(args) == code
    assert says in _one_line(capsys, args[0])
    after = sorted(p.relative_to(wd) for p in wd.rglob("*"))
    if code == 1:  # a runtime failure's traceback goes to the workdir's log, and nothing else is written
        after = [p for p in after if p.parts[0] != "logs"]
    assert after == before  # no run folder, report or plot


# -- early checks ---------------------------------------------------------------------------------

def _grid(tmp_path: Path, features: str = "syn", **train: int) -> Path:
    text = SMOKE.read_text().replace("name: syn", f"name: {features}").replace("seeds: [1, 2]", "seeds: [1]")
    text = text.replace("epochs: 3", "epochs: 1").replace("bootstrap: 200", "bootstrap: 20")
    for key, value in train.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # was ")
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_benchmark_with_a_missing_feature_set_is_refused_before_training(wd, tmp_path, capsys, dry):
    before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
    assert cli.main(["benchmark", str(wd), "--config", str(_grid(tmp_path, "nofeat")), "--no-progress",
                     *(["--dry-run"] if dry else [])]) == 2
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["todo"] * 3  # the runs, listed
    assert _errors(err) == [f"videolt benchmark: error: feature set 'nofeat' not found ({wd}/features/nofeat.zarr): "
                            "make it with `videolt extract --name nofeat` or `videolt import-features --name nofeat` "
                            "(all 3 runs)"]
    assert sorted(p.relative_to(wd) for p in wd.rglob("*")) == before  # nothing trained, no report


def test_benchmark_dry_run_warns_of_empty_groups_with_the_fix(wd, tmp_path, capsys, caplog):
    grid = _grid(tmp_path, group_head=500, group_tail=100)
    assert cli.main(["benchmark", str(wd), "--config", str(grid), "--dry-run", "--json"]) == 0
    result = _strict(capsys.readouterr().out)
    assert result["checks"]["errors"] == [] and len(result["checks"]["warnings"]) == 1
    warning = result["checks"]["warnings"][0]
    assert "head and medium groups are empty" in warning and "head > 500, tail <= 100" in warning
    assert "--set train.group_head=" in warning and warning.endswith("(all 3 runs)")
    assert warning in [r.getMessage() for r in caplog.records]
    fix = warning.split("; ")[-1].split(" gives")[0].split()
    overrides = [v for flag, v in zip(fix[::2], fix[1::2]) if flag == "--set"]
    assert cli.main(["benchmark", str(wd), "--config", str(grid), "--dry-run", "--json",
                     *[a for o in overrides for a in ("--set", o)]]) == 0  # the fix it names silences it
    assert _strict(capsys.readouterr().out)["checks"]["warnings"] == []


def test_benchmark_reports_failed_runs_as_a_table_and_logs_their_tracebacks(wd, tmp_path, capsys, monkeypatch):
    from videolt.pipeline import benchmark

    real = benchmark.run_train

    def sometimes(root, run, config, **kw):
        if run.startswith("focal"):
            raise RuntimeError("the GPU caught fire")
        return real(root, run, config, **kw)

    monkeypatch.setattr(benchmark, "run_train", sometimes)
    assert cli.main(["benchmark", str(wd), "--config", str(_grid(tmp_path)), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    table = {line.split()[1]: line for line in out.splitlines() if not line.startswith("report:")}
    assert sorted(line.split()[0] for line in table.values()) == ["done", "done", "failed"]
    assert table["focal_syn_nonlinear_s1"].endswith("internal error: RuntimeError: the GPU caught fire")
    assert "Traceback" not in err
    assert _errors(err)[-1] == (f"videolt benchmark: error: smoke: 1 of 3 runs failed (each one's traceback in "
                                f"{wd}/logs/videolt.log); the report holds the 2 finished runs")
    assert "RuntimeError: the GPU caught fire" in (wd / "logs" / "videolt.log").read_text()
    assert json.loads((wd / "reports" / "smoke" / "report.json").read_text())["finished"] == 2
    # Rerun: only the failed run trains; the finished ones are not written again
    finished = {r: (wd / "runs" / r / "metrics.json").stat().st_mtime_ns for r in table if not r.startswith("focal")}
    monkeypatch.undo()
    assert cli.main(["benchmark", str(wd), "--config", str(_grid(tmp_path)), "--no-progress"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[:3]] == ["done"] * 3
    assert {r: (wd / "runs" / r / "metrics.json").stat().st_mtime_ns for r in finished} == finished


def test_empty_split_is_warned_at_init_and_named_in_errors(tmp_path, capsys, caplog):
    rows = [(f"emptySplit{i}", [i % 3]) for i in range(9)]
    lists = write_lists(tmp_path / "lists", train=rows[:6], val=[], test=rows[6:])
    assert cli.main(["init", str(tmp_path / "wd"), "--labels", str(lists)]) == 0
    assert any("validate.lst lists no videos: split val is empty" in r.getMessage() for r in caplog.records)
    wd = Workdir.open(tmp_path / "wd")
    with wd.manifest() as m:
        ids = [v.video_id for v in m.videos()]
    store = FeatureStore.create(wd.features_path("syn"), ids, frames=4, dim=8, attrs={})
    for i in range(len(ids)):
        store.write_row(i, np.ones((4, 8), np.float16), 4)
    capsys.readouterr()
    assert cli.main(["train", str(wd.root), "--features", "syn", "--run", "v", "--select-on", "val"]) == 2
    assert f"split val is empty: {wd.labels_dir / 'validate.lst'} lists no videos" in _one_line(capsys, "train")
    assert not wd.run_dir("v").exists()


def test_label_lists_with_a_byte_order_mark_and_crlf_read_as_the_plain_ones(base, tmp_path):
    plain = base[0] / "labels"
    windows = tmp_path / "windows"
    windows.mkdir()
    for f in plain.iterdir():
        windows.joinpath(f.name).write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))
    assert load_labels(windows) == load_labels(plain)  # every ID of every list, the first class's name too
    wd = Workdir.init(tmp_path / "wd", windows)
    with wd.manifest() as m, Workdir(base[0]).manifest() as ref:
        assert m.videos() == ref.videos()


# -- readable numbers -----------------------------------------------------------------------------

def test_empty_groups_are_null_in_json_na_in_text_and_warned(base, capsys, caplog):
    root, syn = base
    metrics = _strict((root / "runs" / "default" / "metrics.json").read_text())
    assert metrics["head_map"] is None and metrics["medium_map"] is None and metrics["tail_map"] > 0
    assert (metrics["group_head"], metrics["group_tail"]) == (500, 100)
    assert cli.main(["evaluate", str(root), "--run", "default", "--json"]) == 0
    assert _strict(capsys.readouterr().out)["other_selection"]["head_map"] is None
    caplog.clear()
    assert cli.main(["evaluate", str(root), "--run", "default"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[1:3] == ["n/a", "n/a"]
    warning = next(r.getMessage() for r in caplog.records if "groups are empty" in r.getMessage())
    assert "head > 500, tail <= 100" in warning and "--set group_head=" in warning and "--set group_tail=" in warning
    assert cli.main(["labels", str(root / "labels")]) == 0  # the same, with the flags of `labels`
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("warning: ")]
    head, tail = (int(line.split(flag)[1].split()[0]) for flag in ("--head ", "--tail "))
    assert "head and medium groups are empty" in line and cli.main(["labels", str(root / "labels"), "--head",
                                                                    str(head), "--tail", str(tail), "--json"]) == 0
    assert _strict(capsys.readouterr().out)["warnings"] == []


def test_report_refuses_other_groups_naming_thresholds_and_fix_and_writes_nothing(wd, capsys):
    assert cli.main(["report", str(wd), "--runs", "small", "default", "--bootstrap", "20"]) == 2
    line = _one_line(capsys, "report")
    assert "head > 500, tail <= 100" in line and "were scored with different class groups" in line
    assert not (wd / "reports" / "compare").exists()  # no plot
    fix = line.split("`")[1].split()  # the command it names, run as it says
    assert fix[:2] == ["videolt", "evaluate"] and "--set" in fix
    assert cli.main(fix[1:]) == 0
    capsys.readouterr()
    assert cli.main(["report", str(wd), "--runs", "small", "default", "--bootstrap", "20"]) == 0


def test_report_prints_treatment_minus_control_with_both_names(base, tmp_path, capsys):
    root = base[0]
    assert cli.main(["report", str(root), "--runs", "focal", "small", "--bootstrap", "20", "--json",
                     "--out", str(tmp_path / "plots")]) == 0
    result = _strict(capsys.readouterr().out)
    (c,) = result["comparisons"]
    assert (c["treatment"], c["control"]) == ("focal", "small")
    ap = {r: np.loadtxt(root / "runs" / r / "per_class_ap.csv", delimiter=",", skiprows=1, usecols=4)
          for r in ("focal", "small")}
    assert c["groups"]["overall"]["difference"] == pytest.approx(ap["focal"].mean() - ap["small"].mean(), abs=1e-5)
    assert cli.main(["report", str(root), "--runs", "focal", "small", "--bootstrap", "0",
                     "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("focal − small (treatment − control;")
    assert out[1].split()[:5] == ["overall", "focal", f"{ap['focal'].mean():.4f}", "−", "small"]


@pytest.mark.parametrize("argv, says", [
    ([], "videolt: error: the following arguments are required: COMMAND (see videolt --help)"),
    (["trian"], "videolt: error: argument COMMAND: invalid choice: 'trian'"),
    (["train", "wd", "--features", "syn"], "videolt train: error: the following arguments are required: --run "
                                           "(see videolt train --help)"),
    (["status", "wd", "--bogus"], "videolt: error: unrecognized arguments: --bogus (see videolt --help)"),
    (["train", "wd", "--run", "r", "--epochs", "ten"], "videolt train: error: argument --epochs: invalid int value"),
])
def test_usage_errors_are_one_line_too(capsys, argv, says):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(says)
