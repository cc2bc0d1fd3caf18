"""The house rules, enforced: engine never imports UI or HTTP; screens never import HTTP."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

from conftest import REPO


def test_import_linter_contracts_pass() -> None:
    exe = shutil.which("lint-imports", path=str(REPO / ".venv" / "bin")) or shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extra"
    proc = subprocess.run([exe, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken" in proc.stdout


def test_engine_imports_without_textual_or_aiohttp() -> None:
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('textual', 'aiohttp', 'screens', 'contimg_console'):
                    raise ImportError(f'blocked: {name}')
                return None
        sys.meta_path.insert(0, Block())
        import importlib, pkgutil, engine
        names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'engine.')
                 if '.migrations' not in m.name]
        for name in names:
            importlib.import_module(name)
        assert 'engine.processing.engine' in names and 'engine.settings' in names
        print('ok')
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
