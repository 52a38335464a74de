"""SEGA concepts derived from an instruction (the faces world's vocabulary) and multi-turn ``segakit edit --then``."""

import json

import numpy as np
import pytest
from cli_runner import cli
from PIL import Image

from segakit.core.errors import UserError
from segakit.editing.concepts import RELATIVE_SKIN, derive_concepts, instruction_changes
from segakit.editing.params import EditParams
from segakit.world.pairs import pair_at
from segakit.world.sessions import session_at

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_world_instruction_reads_back_as_its_changes():
    """The first 150 pairs of seed 0 (one or two changes, pronouns and "the <noun>") and 10 sessions' turns."""
    for i in range(150):
        pair = pair_at(0, i)
        got = {(c.attribute, c.value) for c in instruction_changes(pair.instruction)}
        want = {(a, new) for a, (_old, new) in pair.changes.items()}
        relative = {("skin", v) for v in RELATIVE_SKIN}
        if got & relative:  # "make his skin darker": the direction, not the value
            want = {w for w in want if w[0] != "skin"} | (got & relative)
        assert got == want, (i, pair.instruction)
    for i in range(10):
        s = session_at(0, i)
        for text, (attr, _old, new) in zip(s.instructions, s.changes):
            assert {(c.attribute, c.value) for c in instruction_changes(text)} - {
                ("skin", v) for v in RELATIVE_SKIN
            } <= {(attr, new)}


@pytest.mark.parametrize(
    "instruction, caption, concepts",
    [
        ("turn her hair brown", "a woman with blonde hair", ["+brown hair", "-blond hair"]),
        ("turn her hair brown", None, ["+brown hair"]),
        ("take off his glasses", None, ["-glasses"]),
        ("give the doctor a hat and make the doctor smile", "a doctor with a frown", ["+hat", "+smile", "-frown"]),
        ("give him lipstick and eye shadow", None, ["+makeup"]),
        ("make him clean-shaven", None, ["-beard"]),
        ("shave his head", "a man with short hair", ["+bald", "-short hair"]),
        ("give him darker skin", "a man with light skin", ["+dark skin"]),
        ("Please remove the hat from this picture.", None, ["-hat"]),  # not a world phrasing: the words
        ("a zombie with red hair", None, ["+red hair", "+zombie"]),
    ],
)
def test_concepts_from_instructions(instruction, caption, concepts):
    assert sorted(derive_concepts(instruction, caption)) == sorted(concepts)


def test_nothing_derivable_is_one_sentence_naming_the_instruction():
    with pytest.raises(
        UserError, match=r"No SEGA concept could be derived from the instruction 'make it pop'.*--concept"
    ):
        derive_concepts("make it pop")


def test_sega_params_without_concepts_take_them_from_the_instruction():
    p = EditParams("take off her hat", method="sega").validate()
    assert p.concepts == ["-hat"]
    q = EditParams("take off her hat", method="sega", concepts=["+glasses"]).validate()
    assert q.concepts == ["+glasses"]  # given concepts win


def _face(tmp_path):
    path = tmp_path / "face.png"
    pair_at(0, 4).source_image.save(path)
    return path


def test_multi_turn_edit_records_every_turn_and_repeats(monkeypatch, capsys, tmp_path):
    src, out, again = _face(tmp_path), tmp_path / "turns.png", tmp_path / "again.png"
    code, stdout, stderr = cli(monkeypatch, capsys, "edit", src, "turn her hair brown", "--method", "sega", "--source-caption",
                               "a woman with blonde hair", "--then", "give her glasses", "--steps", "1",
                               "--show-captions", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    params = json.loads(Image.open(out).text["segakit"])
    assert params["instruction"] == "turn her hair brown" and params["concepts"] == ["+brown hair", "-blond hair"]
    assert [t["instruction"] for t in params["turns"]] == ["give her glasses"]
    assert [t["concepts"] for t in params["turns"]] == [["+glasses"]]
    assert "turn 2: source caption" in stdout
    code, _, stderr = cli(monkeypatch, capsys, "edit", "--from-png", out, "--out", again, "--device", "cpu")
    assert code == 0, stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
    assert json.loads(Image.open(again).text["segakit"])["turns"] == params["turns"]


def test_multi_turn_onthefly_chains_the_captions(monkeypatch, capsys, tmp_path):
    src, out = _face(tmp_path), tmp_path / "chain.png"
    code, _, stderr = cli(monkeypatch, capsys, "edit", src, "turn her hair brown", "--source-caption", "a woman with blonde hair",
                          "--captions-after", "a woman with brown hair", "--then", "give her glasses", "--then-captions-after",
                          "a woman with brown hair and glasses", "--steps", "1", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    turn = json.loads(Image.open(out).text["segakit"])["turns"][0]
    assert turn["source_caption"] == "a woman with brown hair"  # the first turn's caption after
    assert turn["captions_after"] == ["a woman with brown hair and glasses"]


def test_multi_turn_caption_count_mismatch_is_one_sentence(monkeypatch, capsys, tmp_path):
    src, out = _face(tmp_path), tmp_path / "x.png"
    code, _, stderr = cli(monkeypatch, capsys, "edit", src, "turn her hair brown", "--source-caption", "a woman",
                          "--captions-after", "a woman with brown hair", "--then", "give her glasses", "--then", "make her smile",
                          "--then-captions-after", "a woman with glasses", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "--then-captions-after was given 1 times for 2 --then instructions" in stderr and not out.exists()
