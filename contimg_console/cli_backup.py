"""``contimg backup create|list|show|validate|restore|delete``: the backup service from the shell.

``restore`` works with nothing running and with a damaged ``pipeline.sqlite3``: it never opens the
live database before replacing it (``engine.backups.offline``). The other commands open and
migrate the database like every other command. Exit codes: 0 done (``validate``: valid), 1 failed
or invalid (the reasons printed), 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import ContimgError
from engine.settings import Settings

#: ``--type`` → (backup type, kind, scope keys). The database copy is always made.
TYPES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "full": ("full", "full", ("images", "catalogs", "pipeline_configs", "job_history", "qa_ratings")),
    "database_only": ("full", "database", ("job_history", "qa_ratings")),
    "caltables_only": ("full", "caltables", ("catalogs", "job_history", "qa_ratings")),
    "config": ("full", "config", ("pipeline_configs",)),
    "incremental": ("incremental", "incremental",
                    ("images", "catalogs", "pipeline_configs", "job_history", "qa_ratings")),
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("backup", help="create, list, validate and restore backups (restore works offline)")
    bs = p.add_subparsers(dest="backup_command", required=True)
    c = bs.add_parser("create", help="make a backup now (waits until it is written)")
    c.add_argument("--type", dest="backup_kind", choices=list(TYPES), default="full")
    c.add_argument("--name", help="default: '<type> <date time>'")
    c.add_argument("--with-ms", action="store_true", help="full/incremental: include measurement sets (large)")
    c.add_argument("--parent", help="incremental: the backup it builds on (default: the newest completed full)")
    c.add_argument("--notes")
    ls = bs.add_parser("list", help="backups, newest first")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--limit", type=int, default=50)
    sh = bs.add_parser("show", help="one backup: record and files")
    sh.add_argument("id")
    sh.add_argument("--json", action="store_true")
    v = bs.add_parser("validate", help="re-hash every file; exit 0 valid, 1 invalid (reasons printed)")
    v.add_argument("id")
    r = bs.add_parser("restore", help="replace the database with the backup's copy (stop the service first)")
    r.add_argument("id")
    r.add_argument("--preview", action="store_true", help="say what would change; change nothing")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.add_argument("--force", action="store_true", help="even while a console or server holds the data dir")
    d = bs.add_parser("delete", help="remove a backup's files and record")
    d.add_argument("id")


def _user() -> str:
    return f"cli:{os.environ.get('USER', 'operator')}"[:64]


def _db(settings: Settings):  # type: ignore[no-untyped-def]
    from engine.db import Database

    settings.ensure_dirs()
    db = Database.from_settings(settings)
    db.upgrade()
    return db


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    return {"create": _create, "list": _list, "show": _show, "validate": _validate, "restore": _restore,
            "delete": _delete}[args.backup_command](settings, args)


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from engine import backups as bk
    from engine.backups.schedule import run_scheduled_backup

    btype, kind, keys = TYPES[args.backup_kind]
    scope = {k: True for k in keys}
    if args.with_ms:
        if kind not in ("full", "incremental"):
            raise ContimgError("--with-ms is for --type full or incremental")
        scope["measurement_sets"] = True
    db = _db(settings)
    try:
        parent = args.parent
        if btype == "incremental" and parent is None:
            fulls = bk.list_backups(db, 1, "full", "completed", kind="full")
            if not fulls:
                raise ContimgError("an incremental backup needs a completed full one first (backup create --type full)")
            parent = fulls[0]["id"]
        if parent and btype != "incremental":
            raise ContimgError("--parent is for --type incremental")
        name = args.name or f"{args.backup_kind} {datetime.now():%Y-%m-%d %H:%M}"
        bid = bk.create_backup(settings, db, name=name, backup_type=btype, scope=scope, created_by=_user(),
                               notes=args.notes, parent_backup_id=parent, kind=kind)
        print(f"backup {bid} ({args.backup_kind}) started", file=sys.stderr, flush=True)
        result = run_scheduled_backup(settings, db, bid)  # also the off-site copy and retention
        row = bk.get_backup(db, bid)
    finally:
        db.dispose()
    if row is None or row["status"] != "completed":
        print(f"contimg: backup {bid} failed: {row['error_message'] if row else 'its record vanished'}",
              file=sys.stderr)
        return 1
    print(f"backup {bid} completed: {row['item_count']} file(s), {row['size_formatted']} in "
          f"{row['storage_location']}")
    if result.get("offsite"):
        print(f"copied off-site to {result['offsite']}")
    if result.get("offsite_error"):
        print(f"contimg: warning: off-site copy failed: {result['offsite_error']}", file=sys.stderr)
    if result.get("pruned"):
        print(f"pruned by retention: {', '.join(result['pruned'])}")
    return 0


def _list(settings: Settings, args: argparse.Namespace) -> int:
    from engine import backups as bk

    db = _db(settings)
    try:
        rows = bk.list_backups(db, args.limit)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no backups")
        return 0
    print(f"{'id':<32}  {'kind':<12} {'status':<10} {'size':>10}  {'created':<19}  name")
    for b in rows:
        flag = " (INVALID)" if b["validation_status"] == "invalid" else ""
        print(f"{b['id']:<32}  {b['kind']:<12} {b['status']:<10} {b['size_formatted']:>10}  "
              f"{(b['created_at'] or '')[:19]:<19}  {b['name']}{flag}")
    return 0


def _show(settings: Settings, args: argparse.Namespace) -> int:
    from engine import backups as bk
    from engine.backups.common import _load_manifest

    db = _db(settings)
    try:
        row = bk.get_backup(db, args.id)
    finally:
        db.dispose()
    if row is None:
        raise ContimgError(f"no backup {args.id} (contimg backup list shows them)")
    files: list[dict[str, Any]] = []
    problem = None
    if row["status"] == "completed":
        try:
            files = _load_manifest(Path(row["storage_location"]))["files"]
        except ContimgError as exc:
            problem = str(exc)
    if args.json:
        print(json.dumps({**row, "files": files, "manifest_error": problem}, indent=2))
        return 0
    for key in ("id", "name", "kind", "type", "status", "size_formatted", "item_count", "created_at",
                "started_at", "completed_at", "created_by", "storage_location", "parent_backup_id",
                "validation_status", "validated_at", "checksum", "notes", "error_message"):
        if row.get(key) not in (None, ""):
            print(f"{key:<18} {row[key]}")
    print(f"{'scope':<18} {', '.join(k for k, v in row['scope'].items() if v) or '(database only)'}")
    if problem:
        print(f"manifest: {problem}")
    for f in files:
        print(f"  {f['size']:>12}  {f['path']}")
    return 0


def _validate(settings: Settings, args: argparse.Namespace) -> int:
    """By the database when it opens (the verdict is recorded), else from the backup's files alone."""
    import sqlite3

    from engine import backups as bk
    from engine.backups.offline import verify_offline

    result: dict[str, Any] | None = None
    try:
        db = _db(settings)
    except (sqlite3.DatabaseError, ContimgError, OSError) as exc:  # a damaged live DB: the files still tell
        print(f"contimg: the database does not open ({exc}); validating from the backup's files",
              file=sys.stderr)
        db = None
    if db is not None:
        try:
            if bk.get_backup(db, args.id) is not None:
                r = bk.validate_backup(settings, db, args.id)
                result = {"is_valid": r["is_valid"], "reasons": [r["reason"]] if r["reason"] else [],
                          "files": r["files_verified"] + r["files_corrupted"]}
        finally:
            db.dispose()
    if result is None:
        r = verify_offline(settings, args.id)
        result = {"is_valid": r["is_valid"], "reasons": r["reasons"], "files": len(r["manifest"].get("files", []))}
    if result["is_valid"]:
        print(f"backup {args.id} is valid: {result['files']} file(s) verified")
        return 0
    print(f"backup {args.id} is INVALID: {'; '.join(result['reasons'])}")
    return 1


def _print_counts(before: dict[str, int] | str, after: dict[str, int] | str, titles: tuple[str, str]) -> None:
    if isinstance(before, str) or isinstance(after, str):
        print(f"  {titles[0]}: {before if isinstance(before, str) else f'{len(before)} tables'}; "
              f"{titles[1]}: {after if isinstance(after, str) else f'{len(after)} tables'}")
    names = sorted(set(before if isinstance(before, dict) else {}) | set(after if isinstance(after, dict) else {}))
    if not names:
        return
    print(f"  {'table':<28} {titles[0]:>12} {titles[1]:>12}")
    for n in names:
        b = before.get(n, "-") if isinstance(before, dict) else "?"
        a = after.get(n, "-") if isinstance(after, dict) else "?"
        mark = "" if b == a else "  *"
        print(f"  {n:<28} {b!s:>12} {a!s:>12}{mark}")


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from engine.backups import lock, offline
    from engine.backups.common import require_sqlite

    require_sqlite(settings, "the offline restore")  # a PostgreSQL database: pg_restore's job

    check = offline.verify_offline(settings, args.id)
    if not check["is_valid"]:
        print(f"contimg: backup {args.id} is not valid, refusing to restore: {'; '.join(check['reasons'])}",
              file=sys.stderr)
        return 1
    man = check["manifest"]
    print(f"backup {args.id}: {man.get('name')} ({man.get('kind') or man.get('type')}), written "
          f"{man.get('written_at')}; valid")
    holders = lock.holders(settings.data_dir)
    if holders:
        who = ", ".join(f"pid {h.get('pid')} ({h.get('purpose', '?')})" for h in holders)
        print(f"the data dir is in use by {who}" + ("; --force given" if args.force else ""))
    if args.preview:
        print(f"would replace {settings.db_path} (kept as {Path(settings.db_path).name}.pre-restore-<time>, "
              "after a safety copy), then migrate it to head; rows per table:")
        _print_counts(offline.row_counts(settings.db_path), offline.row_counts(Path(check["path"]) / "database" /
                                                                              "pipeline.sqlite3"),
                      ("live now", "in backup"))
        if any(not e["path"].startswith("database/") for e in man.get("files", [])):
            print("files in the backup (caltables, images, config) are not restored offline; restore them from "
                  "the console or REST once the service runs")
        return 0
    if holders and not args.force:
        print("contimg: refusing to restore while a console or server holds the data dir; stop it first "
              "(or --force, at your own risk)", file=sys.stderr)
        return 1
    if not args.yes:
        if not sys.stdin.isatty():
            print("contimg: restore replaces the live database; confirm with --yes", file=sys.stderr)
            return 1
        answer = input(f"replace {settings.db_path} with backup {args.id}? type 'yes': ")
        if answer.strip().lower() != "yes":
            print("not restored")
            return 1
    result = offline.restore_database_offline(settings, args.id, force=args.force)
    safety = result["safety"]
    if safety["kind"] == "backup":
        print(f"safety backup of the previous database: {safety['backup_id']} ({safety['path']})")
    elif safety["kind"] == "raw":
        print(f"the previous database did not copy cleanly ({safety['why']}); its raw files are in {safety['path']}")
    print(f"database restored from {args.id}; previous file kept as {result['previous']}")
    print(f"schema: {result['revision']['from']} → {result['revision']['to']} (head)")
    if result["registered_again"]:
        print(f"backups registered again (made after the restored point): {', '.join(result['registered_again'])}")
    if result["superseded"]:
        print(f"staged restores set aside: {', '.join(result['superseded'])}")
    print("rows per table:")
    _print_counts(result["before"], result["after"], ("before", "after"))
    return 0


def _delete(settings: Settings, args: argparse.Namespace) -> int:
    from engine import backups as bk

    db = _db(settings)
    try:
        try:
            bk.delete_backup(settings, db, args.id)
        except KeyError:
            raise ContimgError(f"no backup {args.id} (contimg backup list shows them)") from None
    finally:
        db.dispose()
    print(f"backup {args.id} deleted")
    return 0
