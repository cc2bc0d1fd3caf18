"""IVOA protocols over the pipeline's catalogue: Simple Cone Search 1.03 and TAP 1.1 (sync, ADQL).

Plain functions returning VOTable bytes; the HTTP layer (``contimg_console/api/vo_routes.py``)
only maps requests onto them, so the same service answers pyvo, TOPCAT and the dashboard.
"""
