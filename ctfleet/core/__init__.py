"""The pure core: models, classification, norms, compliance, and the shared names
(:mod:`~ctfleet.core.conventions`) every part agrees on.

May import: the standard library (no socket, subprocess, asyncio, HTTP or threading),
pydantic and ruamel.yaml (to read the data files it is handed). Imported by everything.
No network or process I/O here (an import-linter contract in pyproject.toml checks it).
"""
