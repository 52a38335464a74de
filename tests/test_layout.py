"""The package layout: the import contracts hold (and can fail), and the module paths of 0.1 are gone (removed in 0.3)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
# The flat module paths of 0.1 (moved in 0.2, kept with a DeprecationWarning until 0.3) are gone in 0.3.
REMOVED_IN_0_3 = {
    "segakit.guidance": "segakit.sega.guidance",
    "segakit.pipeline": "segakit.sega.pipeline",
    "segakit.editspec": "segakit.sega.editspec",
    "segakit.demo": "segakit.sega.demo",
    "segakit.conditioning": "segakit.core.conditioning",
    "segakit.images": "segakit.core.images",
    "segakit.atomic": "segakit.core.atomic",
    "segakit.errors": "segakit.core.errors",
    "segakit.generate": "segakit.jobs.generate",
    "segakit.models": "segakit.core.loading",
}


@pytest.mark.parametrize("old", sorted(REMOVED_IN_0_3))
def test_module_path_of_0_1_is_gone_and_its_new_home_imports(old):
    sys.modules.pop(old, None)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)
    assert importlib.import_module(REMOVED_IN_0_3[old]).__name__ == REMOVED_IN_0_3[old]


def test_top_level_api_is_unchanged():
    import segakit
    from segakit.sega.guidance import Edit
    from segakit.sega.pipeline import SegaPipeline
    from segakit.sega.recorded import RecordedGuidance

    assert (segakit.Edit, segakit.SegaPipeline, segakit.RecordedGuidance) == (Edit, SegaPipeline, RecordedGuidance)


def _lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """src/segakit (without the weights) and pyproject.toml copied, so that a test can break the copy."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(ROOT / "src" / "segakit", root / "src" / "segakit",
                    ignore=shutil.ignore_patterns("assets", "__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_contracts_hold_on_the_tree(tree_copy):
    proc = _lint(tree_copy / "src", tree_copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@contextlib.contextmanager
def appended(tree: Path, lines: dict[str, str]):
    """Append one import line to each of some modules of the copy (paths under src/segakit), then restore them."""
    files = {tree / "src" / "segakit" / rel: line for rel, line in lines.items()}
    kept = {f: f.read_text() for f in files}
    try:
        for f, line in files.items():
            f.write_text(kept[f] + f"\n{line}  # noqa: E402,F401\n")
        yield
    finally:
        for f, text in kept.items():
            f.write_text(text)


def test_core_importing_sega_breaks_the_layers(tree_copy):
    with appended(tree_copy, {"core/errors.py": "from segakit.sega import guidance"}):
        proc = _lint(tree_copy / "src", tree_copy)
    assert proc.returncode != 0
    assert "segakit.core is not allowed to import segakit.sega" in proc.stdout


def test_a_circle_between_siblings_breaks_the_contract(tree_copy):
    circle = {"eval/ssim.py": "from segakit.eval import isolation", "eval/isolation.py": "from segakit.eval import frechet",
              "eval/frechet.py": "from segakit.eval import ssim"}  # fmt: skip
    with appended(tree_copy, circle):
        proc = _lint(tree_copy / "src", tree_copy)
    assert proc.returncode != 0
    assert "No import circles between sibling modules BROKEN" in proc.stdout
    assert "Layers" in proc.stdout and "KEPT" in proc.stdout  # a circle inside one layer breaks only this contract
