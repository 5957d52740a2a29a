"""The public API: one curated, sorted __all__, every name importable, nothing heavy at import."""

from __future__ import annotations

import subprocess
import sys

import loopml


def test_all_is_sorted_and_complete() -> None:
    assert loopml.__all__ == sorted(loopml.__all__)
    for name in loopml.__all__:
        assert getattr(loopml, name) is not None, name


HEAVY = ["sqlalchemy", "pandas", "pyarrow", "sklearn", "fastapi", "dask", "numpy", "alembic", "fsspec"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_import_loopml_is_light() -> None:
    loaded = _modules_after("import loopml")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_cli_help_imports_nothing_heavy() -> None:
    # `loopml --help` must start fast: every command imports its heavy modules itself.
    loaded = _modules_after(
        "from loopml.cli.main import app\n"
        "import typer.main\n"
        "cmd = typer.main.get_command(app)\n"
        "try:\n    cmd.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
