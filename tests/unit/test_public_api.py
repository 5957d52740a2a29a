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
    # pydantic (typer >= 0.29) and rich's markdown (rich-formatted help) each cost ~0.1 s of start-up
    assert not loaded & {*HEAVY, "pydantic", "rich.markdown"}, loaded & {*HEAVY, "pydantic", "rich.markdown"}


def test_status_on_sqlite_imports_no_database_toolkit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from loopml.workspace import Workspace

    Workspace.init(tmp_path).close()
    loaded = _modules_after(
        "import os, sys\n"
        f"os.chdir({str(tmp_path)!r})\n"
        "from loopml.cli.main import app\n"
        "import typer.main\n"
        "try:\n    typer.main.get_command(app).main(['status'], standalone_mode=False)\nexcept SystemExit:\n    pass"
    )
    assert not loaded & {*HEAVY, "pydantic"}, loaded & {*HEAVY, "pydantic"}
