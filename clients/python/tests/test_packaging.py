"""The package builds and installs as `aquifer-client`, importable as `aquifer`, typed
(py.typed), with its dependencies and the pandas extra declared. Offline: the build uses
the .venv's setuptools and wheel (--no-build-isolation), from a copy of the sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_builds_and_installs(tmp_path: Any) -> None:
    source = tmp_path / "src-copy"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
    )
    [wheel] = list(wheels.glob("aquifer_client-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"aquifer/__init__.py", "aquifer/py.typed", "aquifer/_async.py", "aquifer/_sync.py"} <= names
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
    assert "Name: aquifer-client" in meta
    assert "Requires-Dist: httpx" in meta and "Requires-Dist: websockets" in meta
    assert "Provides-Extra: pandas" in meta

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    probe = subprocess.run(
        [sys.executable, "-c", "import aquifer, pathlib; print(aquifer.__file__); "
         "print((pathlib.Path(aquifer.__file__).parent / 'py.typed').exists()); print(aquifer.__version__)"],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )
    file, typed, version = probe.stdout.split()
    assert file.startswith(str(target)) and typed == "True" and version == "0.1.0"
