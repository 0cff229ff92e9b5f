"""`videolt check`: does the workdir hold what its records say, and what to run where it does not.

It verifies, without reading feature data (one `stat` per done row):
- the manifest: SQLite's `quick_check`, and row for row the workdir's label lists (IDs, splits, labels);
- every feature set: its `video_id` array against the manifest's IDs in order, each done row's chunk
  file (present, one row long), and the store's status against the manifest's `features:<name>` state.
Each problem comes with the command that repairs it. `restore_manifest` puts the backup that every
stage leaves at its end (`Workdir.stage`) in place of a damaged or edited manifest, keeping the old one.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from videolt import atomic
from videolt.data import locks
from videolt.data.integrity import damaged_rows, ids_mismatch, lists_mismatch
from videolt.data.manifest import VideoRow, quick_check
from videolt.data.store import STATUS_DONE, STATUS_FAILED, FeatureStore
from videolt.data.workdir import WORKDIR_FILE, Workdir, labels_digest
from videolt.errors import IntegrityError, LockedError, VideoltError

__all__ = ["check_workdir", "format_check", "restore_manifest"]

_SHOWN = 5  # damaged videos named per problem in the text report (the JSON lists them all)


def check_workdir(wd: Workdir) -> dict:
    """The check's report: {"ok", "problems": [{"where", "what", "fix"}], "manifest", "feature_sets", "running"}."""
    report: dict = {"workdir": str(wd.root), "ok": True, "problems": [], "running": {
        name: h.describe() for name, h in locks.holders(wd.root).items()}, "manifest": {}, "feature_sets": []}
    problems = report["problems"]
    restore = f"videolt check {wd.root} --restore-manifest"
    if labels_digest(wd.labels_dir) != wd.meta().get("labels_sha256"):
        problems.append(_problem("labels", f"{wd.labels_dir} changed since `videolt init` ({WORKDIR_FILE} holds "
                                 "the lists' sha256)", "put the original lists back, or init a new workdir"))
    backup = wd.manifest_backup_path
    report["manifest"]["backup"] = _when(backup) if backup.is_file() else None
    videos = _manifest_videos(wd, report, restore if backup.is_file() else None)
    if videos is not None:
        wrong = lists_mismatch(videos, wd.labels())
        if wrong:
            problems.append(_problem("manifest", wrong, f"undo the edit: `{restore}` puts back the manifest as the "
                                     "last stage left it; or init a new workdir"))
        for path in sorted(wd.features_dir.glob("*.zarr")):
            report["feature_sets"].append(_check_set(wd, path, videos, problems, restore))
    report["ok"] = not problems
    return report


def _manifest_videos(wd: Workdir, report: dict, restore: str | None) -> list[VideoRow] | None:
    """The manifest's videos, or None (and a problem) where SQLite finds it damaged."""
    try:
        with wd.manifest() as m:
            verdict = m.quick_check()
            videos = m.videos()
    except (IntegrityError, sqlite3.DatabaseError, FileNotFoundError) as e:
        verdict = str(e)
    if verdict != "ok":
        fix = f"`{restore}`" if restore else "no backup to restore: init a new workdir and import its videos"
        report["problems"].append(_problem("manifest", f"{wd.manifest_path} is damaged ({verdict})", fix))
        return None
    report["manifest"].update(videos=len(videos), path=str(wd.manifest_path))
    return videos


def _check_set(wd: Workdir, path: Path, videos: list[VideoRow], problems: list, restore: str) -> dict:
    name = path.name.removesuffix(".zarr")
    where = f"feature set {name}"
    try:
        store = FeatureStore.open(path)
    except VideoltError as e:
        problems.append(_problem(where, str(e), f"remove {path} and extract it again"))
        return {"name": name, "readable": False}
    status = store.status()
    entry = {"name": name, "rows": store.n, "done": int((status == STATUS_DONE).sum()),
             "failed": int((status == STATUS_FAILED).sum()), "compression": store.compression}
    entry["missing"] = entry["rows"] - entry["done"] - entry["failed"]
    wrong = ids_mismatch(store, videos)
    if wrong:
        problems.append(_problem(where, f"{wrong}: it was made for another manifest", f"`{restore}` if the manifest "
                                 f"was edited since; else extract it again under a new name (names, --name)"))
        return entry
    redo = _redo_command(wd, name, store)
    damaged = damaged_rows(store)
    ids = store.video_ids
    entry["damaged"] = {str(ids[row]): what for row, what in damaged.items()}
    if damaged:
        shown = ", ".join(f"{ids[row]} ({what})" for row, what in list(damaged.items())[:_SHOWN])
        more = f" and {len(damaged) - _SHOWN} more" if len(damaged) > _SHOWN else ""
        problems.append(_problem(where, f"{len(damaged)} done row(s) without their data: {shown}{more}",
                                 f"`{redo}` does them again"))
    with wd.manifest() as m:
        recorded = {i for i, st in m.states(f"features:{name}").items() if st.status == "done"}
    lost = sorted(recorded - set(np.flatnonzero(status == STATUS_DONE).tolist()))
    entry["recorded_not_stored"] = [str(ids[i]) for i in lost]
    if lost:
        problems.append(_problem(where, f"{len(lost)} video(s) recorded done in the manifest have no features in "
                                 f"the store (e.g. {ids[lost[0]]})", f"`{redo}` does them again"))
    entry["stored_not_recorded"] = int(len(set(np.flatnonzero(status == STATUS_DONE).tolist()) - recorded))
    return entry


def _redo_command(wd: Workdir, name: str, store: FeatureStore) -> str:
    """The command that made the set (as far as its provenance says), which also repairs it."""
    attrs = store.attrs
    if attrs.get("source") == "import":
        return f"videolt import-features {wd.root} --name {name} --npy-dir {attrs.get('npy_dir', 'DIR')}"
    backbone = (attrs.get("backbone") or {}).get("name", "BACKBONE") if isinstance(attrs.get("backbone"), dict) \
        else "BACKBONE"
    return f"videolt extract {wd.root} --backbone {backbone} --name {name} (with the options it was made with)"


def _problem(where: str, what: str, fix: str) -> dict:
    return {"where": where, "what": what, "fix": fix}


def _when(path: Path) -> dict:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).astimezone()
    return {"path": str(path), "time": stamp.isoformat(timespec="seconds")}


def format_check(report: dict) -> str:
    """The report as lines: what was checked, then each problem with its fix."""
    lines = []
    for name, holder in report["running"].items():
        lines.append(f"running: {name} held by {holder} (what it writes may change under this check)")
    man = report["manifest"]
    if "videos" in man:
        backup = f"backup {man['backup']['time']}" if man.get("backup") else "no backup yet"
        lines.append(f"manifest: {man['videos']} videos ({backup})")
    for s in report["feature_sets"]:
        if "done" in s:
            lines.append(f"feature set {s['name']}: {s['rows']} rows, {s['done']} done, {s['failed']} failed, "
                         f"{s['missing']} to do" + (f"; {s['stored_not_recorded']} written but not yet recorded "
                                                    "(the next run records them)" if s.get("stored_not_recorded")
                                                    else ""))
    for p in report["problems"]:
        lines.append(f"problem: {p['where']}: {p['what']}")
        lines.append(f"  fix: {p['fix']}")
    n = len(report["problems"])
    lines.append(f"{report['workdir']}: " + ("ok" if not n else f"{n} problem(s)"))
    return "\n".join(lines)


def restore_manifest(wd: Workdir) -> dict:
    """Put the manifest's backup in place; the current manifest is kept as `manifest.sqlite.damaged-<time>`.

    Refused while any stage or run holds its lock, and when the backup is missing or fails SQLite's check."""
    running = locks.holders(wd.root)
    if running:
        name, holder = next(iter(running.items()))
        raise LockedError(f"{wd.root}: {name} is in use by {holder.describe()}; restore the manifest once it ends")
    backup = wd.manifest_backup_path
    if not backup.is_file():
        raise IntegrityError(f"{backup}: no backup of the manifest to restore")
    verdict = quick_check(backup)
    if verdict != "ok":
        raise IntegrityError(f"{backup}: the backup is damaged too ({verdict})")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = wd.manifest_path.with_name(f"{wd.manifest_path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):  # a stale WAL must not be replayed into the restored file
        src = Path(f"{wd.manifest_path}{suffix}")
        if src.exists():
            os.replace(src, f"{kept}{suffix}")
    atomic.replace(wd.manifest_path, lambda tmp: shutil.copyfile(backup, tmp))
    return {"restored_from": _when(backup), "kept": str(kept) if kept.exists() else None}
