"""Importing tempest_ws stays cheap: optional dependencies load only when used."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_optional_dependencies() -> None:
    code = (
        "import sys, tempest_ws; "
        "heavy = [m for m in ('redis', 'uvicorn', 'websockets', 'orjson_unused') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_typed_marker_ships() -> None:
    from importlib import resources

    assert resources.files("tempest_ws").joinpath("py.typed").is_file()


def test_a_missing_extra_names_a_pip_command_for_its_declared_requirements() -> None:
    from tempest_ws.exceptions import MissingDependencyError

    error = MissingDependencyError("uvicorn", "server")
    assert (error.package, error.extra) == ("uvicorn", "server")
    assert str(error) == (
        "'uvicorn' is not installed; tempest-ws's 'server' extra needs: "
        "pip install 'uvicorn[standard]>=0.52.1' 'websockets>=17.4' (server)"
    )


def test_without_installed_metadata_a_missing_extra_names_the_package() -> None:
    code = (
        "import importlib.metadata as m\n"
        "def requires(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.requires = requires\n"
        "from tempest_ws.exceptions import MissingDependencyError\n"
        "print(MissingDependencyError('redis', 'redis'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == (
        "'redis' is not installed; tempest-ws's 'redis' extra needs: pip install redis (redis)"
    )
