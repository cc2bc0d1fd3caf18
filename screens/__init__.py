"""Textual screens and widgets of the console.

Screens reach the pipeline only through ``app.services`` (``engine.services.Services``)
and ``app.status()``; they never import the REST package or run SQL.
"""
