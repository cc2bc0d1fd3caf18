"""Backups of the pipeline's state: create, validate, restore, prune, schedule.

A backup is a directory ``<backups_dir>/<id>/`` holding the backed-up files under
logical prefixes and a ``manifest.json`` listing every file with its size and
SHA-256::

    database/pipeline.sqlite3     always: a consistent copy made with SQLite's online backup API
    caltables/...                 scope catalogs or pipeline_configs (calibration tables)
    catalogs/<name>               scope catalogs: calibrator catalogue files named in the settings
    config/<name>                 scope pipeline_configs, when a config file is in use
    images/...                    scope images (FITS and PNG)
    ms/...                        scope measurement_sets (only when asked: can be huge)

Job history and QA ratings live inside the database copy (the manifest says so).
A backup is written into ``<backups_dir>/.tmp-<id>/`` and renamed into place only
when complete, so a crash never leaves a completed half backup (``recover_interrupted``
marks such rows failed and removes the temporary directory at start-up).

Incremental backups hold the files changed since their parent, differential ones the
files changed since the last full backup; the database copy is always whole. Each
manifest keeps an ``index`` of every source file seen (path, size, mtime, hash) so the
next backup can tell what changed without reading the older backups.

Restoring files writes only inside the data dir. Restoring the database cannot
happen under a running process: ``run_restore`` stages the verified copy next to the
live database as ``pipeline.sqlite3.restore-<restore id>``, and the service applies it
with ``apply_pending_restore(settings)`` at its next start, before it opens the
database; the previous database is kept as ``pipeline.sqlite3.pre-restore-<timestamp>``.

Modules: ``create`` (write a backup), ``validate``, ``restore`` (files; the database is
staged), ``swap`` (apply a staged database), ``offline`` (the shell's database restore with
nothing running), ``lock`` (who holds the data dir), ``schedule`` (the built-in schedule
triggers, config on change, off-site copies), ``retention`` (delete, prune by kind),
``records`` (list/get, metrics). Everything here is synchronous; callers run it in threads (``run_backup`` and
``run_restore`` do the slow work and are meant for a worker thread or job).
"""

from engine.backups.common import (  # noqa: F401 - the package's public names
    BACKUP_STATUSES,
    BACKUP_TYPES,
    DB_ENTRY,
    FILE_SCOPE_KEYS,
    KINDS,
    MANIFEST,
    MANIFEST_FORMAT,
    PREFIXES,
    SCOPE_KEYS,
    TMP_PREFIX,
    BackupError,
    UnsafeEntryError,
    check_entry,
    copy_database,
    default_kind,
    format_size,
    sqlite_integrity,
)
from engine.backups.create import (  # noqa: F401
    create_backup,
    derive_request_key,
    recover_interrupted,
    run_backup,
)
from engine.backups.records import get_backup, get_restore, list_backups, list_restores  # noqa: F401
from engine.backups.restore import (  # noqa: F401
    restore_plan,
    restore_preview,
    run_restore,
    start_restore,
)
from engine.backups.retention import delete_backup, prune_backups, prune_by_settings  # noqa: F401
from engine.backups.swap import (  # noqa: F401
    apply_database_restore,
    apply_pending_restore,
    pending_restores,
)
from engine.backups.validate import validate_backup  # noqa: F401
