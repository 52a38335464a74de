"""`segakit generate` under careless use (issue 20, item 3): every class of bad input ends in exit code 2,
one sentence, no traceback and no file or folder left behind, checked before any model loads; plus the
output rules that let a run go on (numbering, --overwrite, chunks), recorded guidance that does not fit,
and the command line's consistency (item 4: --version, -n / --n, readable help, world classify)."""

import os
from pathlib import Path

import numpy as np
import pytest
from cli_runner import cli
from PIL import Image

import segakit.jobs.generate as jobs_generate
from segakit.core import memory
from segakit.core.images import read_params
from segakit.core.outputs import NumberedPaths, plan_images
from segakit.core.threads import choose_threads, free_cores

PROMPT = "a face"
FAST = ["--steps", 2, "--threads", 1]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def no_generation(monkeypatch):
    """Bad input must be refused before the model loads: generation itself fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("generation ran although the input should have been refused first")

    monkeypatch.setattr(jobs_generate, "run", forbidden)


def refused(monkeypatch, capsys, root: Path, *args) -> str:
    """Run ``segakit ARGS`` in ``root``; assert exit 2, one line, no traceback, nothing created; return the line."""
    before = _tree(root)
    monkeypatch.chdir(root)
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 2, (args, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)
    assert _tree(root) == before, (args, _tree(root) - before)
    return err.strip()


# ---- output paths -------------------------------------------------------------------------------------


def test_output_path_mistakes_are_refused_before_work(monkeypatch, capsys, tmp_path, no_generation):
    (tmp_path / "shots.png").mkdir()  # a folder where a file is meant
    (tmp_path / "notes").write_text("x")  # a file where a folder is meant
    (tmp_path / "taken.png").write_bytes(b"keep me")
    (tmp_path / "g.safetensors").write_bytes(b"keep me too")
    (tmp_path / "gdir.safetensors").mkdir()
    cases = [
        (["--out", "shots.png"], "is a folder, but a name ending in .png means one file"),
        (["--out", "notes"], "is a file, not a folder"),
        (["--out", "taken.png"], "exists already; pass --overwrite"),
        (["--out", "picture.jpg"], "ends in .jpg; segakit writes PNG"),
        (["--out", "new/deeper/x.webp"], "ends in .webp"),
        (["--out", "notes/inside/x.png"], "'notes' is a file, so no folder can be made inside it"),
        (["--out", "sub", "--save-guidance", "g.safetensors"], "--save-guidance 'g.safetensors' exists already"),
        (
            ["--out", "sub", "--save-guidance", "gdir.safetensors"],
            "is a folder; give a file name ending in .safetensors",
        ),
        (["--out", "sub", "--save-guidance", "g.pt"], "does not end in .safetensors"),
        (["--out", "sub", "--save-guidance", "new.safetensors", "--guidance", 1], "needs --guidance above 1"),
    ]
    for args, needle in cases:
        line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, *FAST, *args)
        assert needle in line, (args, line)
    assert (tmp_path / "taken.png").read_bytes() == b"keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc, where os.access says yes to root")
def test_unwritable_places_are_found_by_creating_a_file(monkeypatch, capsys, tmp_path, no_generation):
    # /proc accepts no new files, even from root, although os.access(W_OK) says it would
    for args in (["--out", "/proc/segakit-test.png"], ["--out", "/proc/segakit-test-dir"],
                 ["--out", "sub", "--save-guidance", "/proc/segakit-test.safetensors"]):  # fmt: skip
        line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, *FAST, *args)
        assert "nothing can be written in '/proc" in line, line


def test_numbering_continues_and_overwrite_replaces(monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "image-000.png").write_bytes(b"old")
    (out / "image-007.png").write_bytes(b"old")
    code, stdout, err = cli(monkeypatch, capsys, "generate", PROMPT, *FAST, "-n", 2, "--out", out)
    assert code == 0, err
    assert stdout.split() == [str(out / "image-008.png"), str(out / "image-009.png")]
    assert (out / "image-000.png").read_bytes() == b"old"
    single = tmp_path / "one.png"
    single.write_bytes(b"old")
    code, _, err = cli(monkeypatch, capsys, "generate", PROMPT, *FAST, "--out", single, "--overwrite")
    assert code == 0, err
    assert read_params(single)["prompt"] == PROMPT


def test_numbered_paths_are_not_listed_up_front(tmp_path):
    paths = plan_images(tmp_path / "many", 10**9)
    assert isinstance(paths, NumberedPaths) and len(paths) == 10**9
    assert paths[0].name == "image-000.png" and paths[-1].name == "image-999999999.png"
    assert not (tmp_path / "many").exists()  # checked by creating a file, and the folder removed again


# ---- memory and disk ---------------------------------------------------------------------------------


def test_sizes_and_counts_that_cannot_fit_are_refused_with_what_fits(monkeypatch, capsys, tmp_path, no_generation):
    line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, *FAST, "--height", 65536, "--width", 65536)
    assert "A 65536x65536 image needs about" in line and "the largest square size that fits is about" in line
    line = refused(
        monkeypatch, capsys, tmp_path, "generate", PROMPT, *FAST, "-n", 10**8, "--save-guidance", "g.safetensors"
    )
    assert (
        "-n 100000000 needs about" in line and "recorded guidance" in line and "the largest count that fits is" in line
    )
    line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, *FAST, "-n", 10**10)
    assert "on disk" in line and "the largest count that fits is" in line


def test_chunk_size_follows_free_memory():
    need = memory.MemoryNeed(
        weights=100, per_image=50, held_per_image=1, height=64, width=64, per_pixel=0.01, per_pixel_squared=0
    )
    assert memory.plan_chunk(need, 100, None) == memory.MAX_CHUNK
    assert memory.plan_chunk(need, 3, (10**6, "test")) == 3
    assert memory.plan_chunk(need, 100, (int((100 + 100 + 3 * 50) / 0.9) + 1, "test")) == 3
    with pytest.raises(Exception, match="largest count that fits is"):
        memory.plan_chunk(need, 10**6, (10**4, "test"))


def test_large_counts_stream_to_disk_in_chunks(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(memory, "MAX_CHUNK", 2)
    from segakit.sega.pipeline import SegaPipeline

    calls = []
    original = SegaPipeline.__call__

    def spy(self, *args, **kwargs):
        calls.append((kwargs["num_images_per_prompt"], sorted(p.name for p in (tmp_path / "run").glob("*.png"))))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SegaPipeline, "__call__", spy)
    code, _, err = cli(monkeypatch, capsys, "generate", PROMPT, *FAST, "-n", 3, "--seed", 5, "--out", tmp_path / "run")
    assert code == 0, err
    # two calls of at most two images; the first chunk's files were on disk before the second call
    assert calls == [(2, []), (1, ["image-000.png", "image-001.png"])]
    monkeypatch.setattr(SegaPipeline, "__call__", original)
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "--from-png",
        tmp_path / "run" / "image-002.png",
        "--out",
        tmp_path / "again.png",
        "--threads",
        1,
    )
    assert code == 0, err
    a = np.asarray(Image.open(tmp_path / "run" / "image-002.png").convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "again.png").convert("RGB"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1


# ---- edit specs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("+", "names no concept"),
        ("-:s=6", "names no concept"),
        ("+,:", "names no concept"),
        ("::", "names no concept"),
        ("+glasses s=6", "parameters follow a colon: '+glasses:s=6'"),
        ("-beard,w=3", "parameters follow a colon: '-beard:w=3'"),
        ("+glasses:w=5,c=5", "cools down at step 5, at or before its warm-up 5"),
        ("+glasses:c=2", "at or before its warm-up 5 (the model's default)"),
        ("+glasses:w=30", "warms up at step 30, but the run has 25 steps"),
    ],
)
def test_edit_specs_that_say_nothing_or_contradict_themselves(
    monkeypatch, capsys, tmp_path, no_generation, spec, needle
):
    line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, "--steps", 25, "--edit", spec, "--out", "o")
    assert needle in line, line


def test_edit_warnings_do_not_stop_the_run(monkeypatch, capsys, tmp_path):
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        PROMPT,
        *FAST,
        "-e",
        "+glasses",
        "-e",
        "-glasses:w=0",
        "--out",
        tmp_path / "w.png",
    )
    assert code == 0, err
    assert "warms up at step 5 (the model's default), but the run has 2 steps" in err
    assert "'glasses' is both added and removed" in err
    assert (tmp_path / "w.png").is_file()


# ---- recorded guidance ------------------------------------------------------------------------------------


def test_recorded_guidance_that_does_not_fit_says_how_it_was_recorded(monkeypatch, capsys, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    monkeypatch.chdir(rec)
    code, _, err = cli(monkeypatch, capsys, "generate", PROMPT, *FAST, "-n", 2, "-e", "+glasses:w=0",
                       "--out", "edited", "--save-guidance", "g.safetensors")  # fmt: skip
    assert code == 0, err
    for args, needle in [
        (["-n", 3], "this call asks for 3 images with seed 0 (use -n 2 --seed 0)"),
        (["-n", 1, "--seed", 2], "this call asks for 1 image with seed 2 (use -n 2 --seed 0)"),
        (["-n", 2, "--steps", 3], "this call asks for 3 steps (use --steps 2)"),
        (["-n", 2, "--height", 128], "(use --width 64 --height 64)"),
    ]:
        line = refused(
            monkeypatch,
            capsys,
            rec,
            "generate",
            "a smiling face",
            "--steps",
            2,
            "--apply-guidance",
            "g.safetensors",
            *args,
        )
        assert (
            "was recorded for 2 images at 2 steps, 64x64, model 'embedded', seed 0, edits +glasses" in line
            and needle in line
        ), line
    # the images that used it: --from-png finds the guidance beside the PNG, from any folder
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "a smiling face",
        *FAST,
        "-n",
        2,
        "--apply-guidance",
        "g.safetensors",
        "--out",
        "reused",
    )
    assert code == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = cli(
        monkeypatch,
        capsys,
        "generate",
        "--from-png",
        rec / "reused" / "image-001.png",
        "--out",
        "again.png",
        "--threads",
        1,
    )
    assert code == 0, err  # image 1 of the two, alone: it takes the recorded image with its seed
    a = np.asarray(Image.open(rec / "reused" / "image-001.png").convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(elsewhere / "again.png").convert("RGB"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1
    assert read_params(elsewhere / "again.png")["apply_guidance"] == os.path.relpath(rec / "g.safetensors", elsewhere)


def test_recorded_guidance_from_another_model_is_refused(monkeypatch, capsys, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"guidance": torch.zeros(2, 1, 4, 16, 16)}, str(tmp_path / "other.safetensors"),
              metadata={"segakit": '{"model": "/models/sd15", "height": 64, "width": 64}'})  # fmt: skip
    line = refused(
        monkeypatch,
        capsys,
        tmp_path,
        "generate",
        PROMPT,
        "--steps",
        2,
        "--apply-guidance",
        "other.safetensors",
        "--out",
        "o",
    )
    assert "model '/models/sd15'" in line and "this call asks for model 'embedded'" in line


# ---- Ctrl-C (in-process; the subprocess tests are in test_cli_interrupt.py) -------------------------------


def test_interrupt_during_generation_exits_130_with_one_line(monkeypatch, capsys, tmp_path):
    from segakit.cli.interrupt import Interrupted
    from segakit.sega.pipeline import SegaPipeline

    def interrupted(self, *args, **kwargs):
        raise Interrupted

    monkeypatch.setattr(SegaPipeline, "__call__", interrupted)
    code, _, err = cli(monkeypatch, capsys, "generate", PROMPT, *FAST, "-n", 2, "--out", tmp_path / "run")
    assert code == 130 and err == "interrupted\n"
    assert not (tmp_path / "run").exists()


# ---- item 4: a consistent command line -------------------------------------------------------------------


def test_version_short_options_and_readable_help(monkeypatch, capsys):
    from segakit import __version__

    code, out, _ = cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"segakit {__version__}"
    for args in (
        ["generate", "--help"],
        ["world", "sample", "--help"],
        ["world", "classify", "--help"],
        ["directions", "learn", "--help"],
    ):
        code, out, _ = cli(monkeypatch, capsys, *args)
        assert code == 0
        assert "<str>" not in out and "<int>" not in out and "<path>" not in out and "list[" not in out, (args, out)
        if args[-2] in ("generate", "sample", "learn"):
            assert "-n" in out and "--n" in out, (args, out)


def test_world_classify_takes_one_image_and_warns_about_other_sizes(monkeypatch, capsys, tmp_path):
    code, _, err = cli(monkeypatch, capsys, "world", "sample", "-n", 1, "--out", tmp_path / "w")
    assert code == 0, err
    face = next((tmp_path / "w").glob("*.png"))
    code, out, err = cli(monkeypatch, capsys, "world", "classify", face, "--json")
    assert code == 0 and '"n": 1' in out and "warning" not in err, err
    Image.open(face).resize((96, 80)).save(tmp_path / "big.png")
    code, out, err = cli(monkeypatch, capsys, "world", "classify", tmp_path / "big.png", "--json")
    assert code == 0 and '"n": 1' in out
    assert "1 of 1 images are not 64x64 (e.g. big.png, 96x80)" in " ".join(err.split())
    line = refused(monkeypatch, capsys, tmp_path, "world", "classify", "notes.txt")
    assert "does not exist" in line


# ---- item 5: threads -------------------------------------------------------------------------------------


def test_thread_count_follows_free_cores(monkeypatch, capsys, tmp_path, no_generation):
    assert free_cores(8, 0.0) == 8 and free_cores(8, 3.2) == 5 and free_cores(2, 1.0) == 1 and free_cores(2, 5.0) == 1
    monkeypatch.setenv("SEGAKIT_THREADS", "3")
    assert choose_threads() == 3 and choose_threads(2) == 2
    monkeypatch.delenv("SEGAKIT_THREADS")
    assert 1 <= choose_threads() <= (os.cpu_count() or 1)
    line = refused(monkeypatch, capsys, tmp_path, "generate", PROMPT, "--threads", 0)
    assert "--threads 0 is below 1" in line
