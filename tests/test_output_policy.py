"""The one output policy, proved for every command that writes (segakit.core.outputs; docs/guide.md, "Output files").

The walk below finds every ``segakit`` command with an output option (``--out``, ``--save-guidance``) in the Typer
app itself, and requires a case here for each: a new command that writes cannot be added without one. For each
command the cases show that a file already there is not replaced (refused with one sentence that names
``--overwrite``, exit 2, the file byte for byte as it was; or, for ``batch``, kept because the run resumes), and
that a file named where a folder is needed, or a folder where a file is needed, is refused in one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import cli
from PIL import Image

OUTPUT_OPTIONS = {"out", "save_guidance"}
SENTINEL = b"a file the user cares about\n"


def command_tree():
    """(path, click command) of every leaf ``segakit`` command, from the Typer app as the console script builds it."""
    import typer

    from segakit.cli.app import _register_subcommands, app

    _register_subcommands()

    def walk(prefix, command):
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(prefix + (name,), sub)
        else:
            yield " ".join(prefix), command

    return list(walk((), typer.main.get_command(app)))


def output_commands() -> dict[str, set[str]]:
    """Command path -> the names of its output options."""
    found = {}
    for path, command in command_tree():
        names = {p.name for p in command.params if p.name in OUTPUT_OPTIONS}
        if names:
            found[path] = names
    return found


def image(tmp: Path) -> Path:
    path = tmp / "face.png"
    Image.new("RGB", (64, 64), (200, 180, 160)).save(path)
    return path


def report(tmp: Path, name: str = "report.md") -> Path:
    folder = tmp / "study"
    folder.mkdir()
    return folder / name


# command -> (arguments given the existing file, the existing file to create) for "a file there is not replaced"
EXISTING = {
    "generate": lambda t: (["generate", "a face", "--steps", "1", "--out", t / "x.png"], t / "x.png"),
    "edit": lambda t: (["edit", image(t), "give her glasses", "--out", t / "x.png"], t / "x.png"),
    "directions learn": lambda t: (
        ["directions", "learn", "woman", "--positive", "a woman", "--out", t / "w.safetensors"],
        t / "w.safetensors",
    ),
    "world sample": lambda t: (
        ["world", "sample", "-n", "1", "--out", t / "ws", "--start", "0"],
        t / "ws" / "000000.png",
    ),
    "world pairs": lambda t: (
        ["world", "pairs", "-n", "1", "--out", t / "wp", "--start", "0"],
        t / "wp" / "000000_source.png",
    ),
    "world sheet": lambda t: (["world", "sheet", "--out", t / "figs"], t / "figs" / "world-pairs.png"),
    "demo": lambda t: (["demo", "--out", t / "demo"], t / "demo" / "edits.png"),
    "eval embedded": lambda t: (["eval", "embedded", "--out", t / "study"], report(t)),
    "eval sega": lambda t: (["eval", "sega", "--out", t / "study"], report(t)),
    "eval directions": lambda t: (["eval", "directions", "--out", t / "study"], report(t, "report.json")),
    "eval editing": lambda t: (["eval", "editing", "--out", t / "study"], report(t)),
    "eval captioner": lambda t: (["eval", "captioner", "--out", t / "c.json"], t / "c.json"),
    "eval caption-writer": lambda t: (["eval", "caption-writer", "--out", t / "c.json"], t / "c.json"),
}
# command -> arguments that name a file where a folder is needed, or a folder where a file is needed (made first)
WRONG_KIND = {
    "generate": lambda t: ["generate", "a face", "--out", _folder(t / "x.png")],
    "edit": lambda t: ["edit", image(t), "give her glasses", "--out", _folder(t / "x.png")],
    "directions learn": lambda t: [
        "directions",
        "learn",
        "woman",
        "--positive",
        "a woman",
        "--out",
        _folder(t / "w.safetensors"),
    ],
    "world sample": lambda t: ["world", "sample", "-n", "1", "--out", t / "ws.png"],
    "world pairs": lambda t: ["world", "pairs", "-n", "1", "--out", _file(t / "pairs")],
    "world sheet": lambda t: ["world", "sheet", "--out", t / "sheet.png"],
    "demo": lambda t: ["demo", "--out", t / "demo.png"],
    "batch": lambda t: ["batch", _jobs(t), "--out", t / "b.png"],
    "eval embedded": lambda t: ["eval", "embedded", "--out", _file(t / "e")],
    "eval sega": lambda t: ["eval", "sega", "--out", t / "s.json"],
    "eval directions": lambda t: ["eval", "directions", "--out", t / "d.png"],
    "eval editing": lambda t: ["eval", "editing", "--out", _file(t / "ed")],
    "eval captioner": lambda t: ["eval", "captioner", "--out", _folder(t / "c.json")],
    "eval caption-writer": lambda t: ["eval", "caption-writer", "--out", _folder(t / "c.json")],
}
RESUMES = {"batch"}  # keeps what is there by resuming: a finished job's PNG is never written again


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _file(path: Path) -> Path:
    path.write_bytes(SENTINEL)
    return path


def _jobs(tmp: Path) -> Path:
    path = tmp / "jobs.jsonl"
    path.write_text(json.dumps({"prompt": "a face of a person", "seed": 1, "steps": 1}) + "\n")
    return path


def test_every_command_that_writes_has_a_case_and_an_overwrite_flag():
    found = output_commands()
    assert set(found) == set(EXISTING) | RESUMES | {"generate"}, (
        "a command with an output option needs cases in tests/test_output_policy.py (EXISTING and WRONG_KIND)"
    )
    assert set(found) == set(WRONG_KIND)
    for path, command in command_tree():
        if path in found and path not in RESUMES:
            assert "overwrite" in {p.name for p in command.params}, f"segakit {path} writes but has no --overwrite"


def test_default_outputs_are_under_out():
    for path, command in command_tree():
        for p in command.params:
            if p.name == "out" and p.default is not None and not p.required:
                assert str(p.default) == "out" or str(p.default).startswith("out/"), (path, p.default)


@pytest.mark.parametrize("command", sorted(EXISTING))
def test_an_existing_file_is_not_replaced(monkeypatch, capsys, tmp_path, command):
    args, existing = EXISTING[command](tmp_path)
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(SENTINEL)
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 2, (command, code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err, err
    assert existing.read_bytes() == SENTINEL


@pytest.mark.parametrize("command", sorted(WRONG_KIND))
def test_a_file_where_a_folder_is_needed_and_the_reverse_are_refused(monkeypatch, capsys, tmp_path, command):
    args = WRONG_KIND[command](tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 2, (command, code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing made


def test_save_guidance_is_not_replaced(monkeypatch, capsys, tmp_path):
    (tmp_path / "g.safetensors").write_bytes(SENTINEL)
    code, _, err = cli(monkeypatch, capsys, "generate", "a face", "--edit", "+glasses", "--steps", "1",
                       "--out", tmp_path / "x.png", "--save-guidance", tmp_path / "g.safetensors")  # fmt: skip
    assert code == 2 and "--overwrite" in err and (tmp_path / "g.safetensors").read_bytes() == SENTINEL


def test_world_numbering_continues_and_labels_are_appended(monkeypatch, capsys, tmp_path):
    out = tmp_path / "ws"
    assert cli(monkeypatch, capsys, "world", "sample", "-n", "2", "--seed", "5", "--out", out)[0] == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    labels = (out / "labels.jsonl").read_text()
    assert cli(monkeypatch, capsys, "world", "sample", "-n", "2", "--seed", "5", "--out", out)[0] == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png", "000002.png", "000003.png"]
    assert all((out / name).read_bytes() == data for name, data in first.items())  # nothing replaced
    now = (out / "labels.jsonl").read_text()
    assert now.startswith(labels) and [json.loads(x)["file"] for x in now.splitlines()] == [
        f"00000{i}.png" for i in range(4)
    ]
    # the continued portraits are those of indices 2 and 3: the same as asking for them by --start in a new folder
    assert (
        cli(monkeypatch, capsys, "world", "sample", "-n", "2", "--seed", "5", "--start", "2", "--out", tmp_path / "b")[
            0
        ]
        == 0
    )
    assert (tmp_path / "b" / "000002.png").read_bytes() == (out / "000002.png").read_bytes()
    # pairs continue the same way, pairs.jsonl appended
    pairs = tmp_path / "wp"
    for _ in range(2):
        assert cli(monkeypatch, capsys, "world", "pairs", "-n", "1", "--out", pairs)[0] == 0
    assert [json.loads(x)["id"] for x in (pairs / "pairs.jsonl").read_text().splitlines()] == [0, 1]
    # --overwrite with --start replaces that range, and its labels, and keeps the others
    assert (
        cli(
            monkeypatch,
            capsys,
            "world",
            "sample",
            "-n",
            "1",
            "--seed",
            "9",
            "--start",
            "0",
            "--out",
            out,
            "--overwrite",
        )[0]
        == 0
    )
    files = [json.loads(x)["file"] for x in (out / "labels.jsonl").read_text().splitlines()]
    assert sorted(files) == [f"00000{i}.png" for i in range(4)] and len(files) == 4


def test_batch_resumes_without_writing_a_finished_job_again(monkeypatch, capsys, tmp_path):
    jobs = _jobs(tmp_path)
    assert cli(monkeypatch, capsys, "batch", jobs, "--out", tmp_path / "b")[0] == 0
    (png,) = (tmp_path / "b").glob("*.png")
    data, mtime = png.read_bytes(), png.stat().st_mtime_ns
    code, out, _ = cli(monkeypatch, capsys, "batch", jobs, "--out", tmp_path / "b")
    assert code == 0 and "0 written, 1 already done" in out
    assert png.read_bytes() == data and png.stat().st_mtime_ns == mtime
