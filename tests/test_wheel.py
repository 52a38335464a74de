"""The release installs from its wheel: built from a copy of the checkout, installed into a fresh virtual
environment, it carries the shipped weights and runs `segakit generate` with an edit from a folder outside the
checkout.

To stay fast and offline, the fresh environment sees the dependencies already installed beside the running
interpreter through a .pth file listing their site-packages folders (paths only, so an editable segakit there adds
nothing to sys.path), and the wheel goes in with --no-deps. The venv's own site-packages comes first on sys.path, so
the segakit that runs is the wheel's; the test checks that it is.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import segakit

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _dependency_folders() -> list[str]:
    """The running interpreter's site-packages folders (where torch, diffusers, ... are installed)."""
    folders = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(f for f in folders if Path(f).is_dir()))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built by pip from a copy of the checkout's pyproject.toml, README.md, LICENSE and src/ (the checkout is not
    written to)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = _run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", tree],
        cwd=tmp,
    )
    # -v shows the build backend's own output, where setuptools warns (e.g. BuildBackendWarning for a license table)
    warnings = re.findall(r".*\b[A-Za-z]+Warning\b.*", proc.stdout + proc.stderr)
    assert not warnings, "\n".join(warnings)
    (built,) = (tmp / "dist").glob("segakit-*.whl")
    return built


def test_the_wheel_is_the_version_and_carries_the_shipped_assets(wheel):
    assert wheel.name == f"segakit-{segakit.__version__}-py3-none-any.whl"
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/segakit/assets").rglob("*") if p.is_file()}
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"segakit-{segakit.__version__}.dist-info/METADATA").decode()
    assert shipped and shipped <= names, sorted(shipped - names)[:5]
    assert "License-Expression: Apache-2.0" in metadata
    assert f"segakit-{segakit.__version__}.dist-info/licenses/LICENSE" in names  # the license's text


def test_the_wheel_installs_into_a_fresh_venv_and_generates_with_an_edit(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    own = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    )
    (own / "zz_segakit_test_dependencies.pth").write_text("\n".join(_dependency_folders()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"  # a folder outside the checkout
    elsewhere.mkdir()
    where = _run([py, "-c", "import segakit; print(segakit.__file__)"], cwd=elsewhere).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    assert (
        _run([venv / "bin" / "segakit", "--version"], cwd=elsewhere).stdout.strip() == f"segakit {segakit.__version__}"
    )

    out = elsewhere / "face.png"
    _run([venv / "bin" / "segakit", "generate", "a face of a person", "--edit", "+glasses", "--steps", "2",
          "--seed", "0", "--threads", "1", "--device", "cpu", "--out", out], cwd=elsewhere)  # fmt: skip
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (64, 64)
        assert "glasses" in str(image.info)  # the PNG carries the edit it was made with
