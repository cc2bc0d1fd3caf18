"""The pipeline core: database, processing, calibration, imaging, backups, triggers.

Nothing here imports a user interface or an HTTP framework; the TUI and the REST
server both call into this package (enforced by import-linter contracts).
"""
