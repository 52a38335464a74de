"""The embedded model's captioner and caption writer: their recipes (tiny runs that save folders stock
transformers loads, and resume), the shipped assets on world renders, the writer's determinism, the caption sets
they are trained on, the measures, and an edit on the embedded model with only an instruction."""

import json

import pytest
import torch
from cli_runner import cli
from PIL import Image

from segakit.editing.caption_writer import (
    EMBEDDED_CAPTION_WRITER,
    CaptionWriter,
    caption_prompt,
    parse_captions,
)
from segakit.editing.captioner import EMBEDDED_CAPTIONER, Captioner
from segakit.world.captions import parse_caption
from segakit.world.dataset import PAIR_STREAM, sample_at
from segakit.world.edit_captions import edit_captions_at
from segakit.world.pairs import pair_at
from segakit.world.schema import Face


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ recipes
def test_captioner_recipe_trains_resumes_and_saves_a_stock_blip_folder(tmp_path):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from segakit.train.captioner import main

    tiny = ["--run", str(tmp_path / "run"), "--batch_size", "3", "--hidden", "32", "--layers", "1", "--heads", "2",
            "--mlp", "64", "--vocab_captions", "300", "--eval_n", "0", "--threads", "1"]  # fmt: skip
    main(tiny + ["--max_steps", "2"])
    main(tiny + ["--max_steps", "3", "--export", str(tmp_path / "asset")])  # resumes at step 2
    folder = tmp_path / "asset"
    assert json.loads((folder / "training.json").read_text())["step"] == 3
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    model = BlipForConditionalGeneration.from_pretrained(folder)
    processor = BlipProcessor.from_pretrained(folder)
    assert (
        model.config.vision_config.image_size == 64
        and processor.tokenizer.unk_token_id not in processor.tokenizer("a smiling man").input_ids
    )
    text = Captioner.from_pretrained(folder, max_new_tokens=5)(sample_at(1, 0).image)
    assert isinstance(text, str)


def test_caption_writer_recipe_trains_and_saves_a_stock_causal_lm_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from segakit.train.caption_writer import main, text_at

    main(["--run", str(tmp_path / "run"), "--max_steps", "2", "--batch_size", "2", "--n_embd", "32", "--n_layer", "1",
          "--n_head", "2", "--vocab_texts", "300", "--eval_n", "0", "--threads", "1", "--export", str(tmp_path / "asset")])  # fmt: skip
    folder = tmp_path / "asset"
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "GPT2LMHeadModel"
    prompt, rest = text_at(0, 5)
    ids = tokenizer(prompt + rest).input_ids
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == prompt + rest  # word-level, exact round trip
    writer = CaptionWriter.from_pretrained(folder, max_new_tokens=8)
    assert writer.temperature == 0.4  # the recipe's sampling temperature travels in generation_config.json
    assert writer.generate(prompt, seed=3) == writer.generate(prompt, seed=3)


# ------------------------------------------------------------------------------------------ the data
def test_caption_sets_differ_exactly_by_the_change_and_claim_nothing_unsaid():
    for i in range(40):
        ec = edit_captions_at(0, i, 3)
        src = ec.source.labels()
        assert len(ec.before) == len(ec.after) == 3
        first = set(parse_caption(ec.before[0]))
        if "healthy" in ec.before[0]:  # "..., makeup and a healthy complexion": the parser misses the list's form
            first.add("horror")
        for before, after in zip(ec.before, ec.after):
            b, a = parse_caption(before), parse_caption(after)
            assert all(a.get(attr) == {new} for attr, (_, new) in ec.changes.items()), (ec.instruction, after)
            assert all(v == {src[k]} for k, v in b.items()), before  # true of the source face
            assert all(v == {src[k]} for k, v in a.items() if k not in ec.changes), after
            # nothing the writer could not know: attributes of caption 1, or the changed ones
            assert set(b) <= first | set(ec.changes), (ec.before[0], before)


# ------------------------------------------------------------------------------------------ measures
def test_the_measures_judge_by_the_world_parser():
    from segakit.eval.caption_writer import judge_after, judge_before
    from segakit.eval.captioner import judge

    face = Face(presentation="woman", glasses=False, hair_color="red")
    assert judge("a woman without glasses", face) == {"presentation": True, "glasses": True}
    assert judge("a man with red hair", face) == {"presentation": False, "hair_color": True}
    changes = {"glasses": (False, True)}
    assert judge_after("a woman with glasses", face, changes) == (True, True)
    assert judge_after("a man with glasses", face, changes) == (True, False)
    assert judge_after("a woman without glasses", face, changes) == (False, True)
    assert judge_before("a woman with red hair", face) and not judge_before("a woman with glasses", face)
    # a relative skin instruction names a side: any tone on it follows it, the gold tone alone is the change
    face = Face(presentation="woman", skin="medium-light")
    changes = {"skin": ("medium-light", "dark")}
    for instruction, caption, want in [("give her darker skin", "a woman with brown skin", (False, True)),
                                       ("give her darker skin", "a woman with dark skin", (True, True)),
                                       ("give her darker skin", "a woman with pale skin", (False, False)),
                                       ("give her dark skin", "a woman with brown skin", (False, False))]:  # fmt: skip
        change, _ = judge_after(caption, face, changes)
        follows, _ = judge_after(caption, face, changes, instruction)
        assert (change, follows) == want, (instruction, caption)


# ------------------------------------------------------------------------------------------ shipped assets
WRITER_SHIPPED = EMBEDDED_CAPTION_WRITER.is_dir()
needs_writer = pytest.mark.skipif(
    not WRITER_SHIPPED, reason="the embedded caption writer is not shipped yet (docs/editing.md)"
)


@pytest.fixture(scope="module")
def captioner():
    return Captioner.from_pretrained(EMBEDDED_CAPTIONER)


@pytest.fixture(scope="module")
def writer():
    return CaptionWriter.from_pretrained(EMBEDDED_CAPTION_WRITER, max_new_tokens=400)


def test_shipped_captioner_says_what_the_world_parser_reads(captioner):
    from segakit.eval.captioner import judge

    right = total = 0
    for i in range(8):
        s = sample_at(1, i)  # held out: the captioner trains on seed 0 of its own stream
        text = captioner(s.image)
        assert text == captioner(s.image)  # greedy: deterministic
        verdicts = judge(text, s.face)
        assert len(verdicts) >= 3, text  # it names several attributes the parser reads
        right, total = right + sum(verdicts.values()), total + len(verdicts)
    assert right / total >= 0.9  # docs/results/editing/report.md: 99.0% on 300 renders (segakit eval captioner -n 300)


@needs_writer
def test_shipped_caption_writer_parses_is_deterministic_and_writes_the_change(writer):
    ec = edit_captions_at(0, 0, 3, stream=PAIR_STREAM)  # held out: the writer trains on its own stream
    first = writer.write("give her glasses", "a photo of a woman with long hair", n=3, seed=0)
    again = writer.write("give her glasses", "a photo of a woman with long hair", n=3, seed=0)
    assert first == again and first.complete and first.before[0] == "a photo of a woman with long hair"
    assert writer.temperature == 0.4  # the shipped folder's generation_config.json
    stated = [parse_caption(c).get("glasses") == {True} for seed in range(4)
              for c in writer.write("put glasses on her", "a face of a woman with long hair and no glasses", n=3, seed=seed).after]  # fmt: skip
    assert sum(stated) / len(stated) >= 0.5, stated
    prompt = caption_prompt(ec.instruction, 3, ec.before[0])
    text = writer.generate(prompt, seed=1)
    assert text.startswith(prompt) and parse_captions(text) is not None


# ------------------------------------------------------------------------------------------ end to end
def _face(tmp_path):
    path = tmp_path / "face.png"
    pair_at(0, 0).source_image.save(path)
    return path


def test_embedded_edit_captions_the_image_itself(monkeypatch, capsys, tmp_path, captioner):
    path, out = _face(tmp_path), tmp_path / "glasses.png"
    code, stdout, stderr = cli(monkeypatch, capsys, "edit", path, "give her glasses", "--captions-after", "a woman with glasses",
                               "--steps", "2", "--show-captions", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    params = json.loads(Image.open(out).text["segakit"])
    from segakit.editing.image import fit, read_image

    assert params["source_caption"] == captioner(fit(read_image(path), 64))  # the shipped captioner's words
    assert (
        params["captions_before"] == [params["source_caption"]]
        and f"source caption: {params['source_caption']}" in stdout
    )


@pytest.mark.skipif(WRITER_SHIPPED, reason="the embedded caption writer is shipped")
def test_embedded_edit_without_its_writer_asks_for_captions_in_one_sentence(monkeypatch, capsys, tmp_path):
    out = tmp_path / "glasses.png"
    code, _, stderr = cli(
        monkeypatch,
        capsys,
        "edit",
        _face(tmp_path),
        "give her glasses",
        "--steps",
        "2",
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert (
        code == 2 and len(stderr.strip().splitlines()) == 1 and "caption writer is not in this installation" in stderr
    ), stderr
    assert not out.exists()


@needs_writer
def test_embedded_edit_with_only_an_instruction(monkeypatch, capsys, tmp_path):
    path, out = _face(tmp_path), tmp_path / "glasses.png"
    code, stdout, stderr = cli(monkeypatch, capsys, "edit", path, "give her glasses", "--steps", "2", "--captions", "2",
                               "--show-captions", "--out", out, "--device", "cpu")  # fmt: skip
    assert code == 0, stderr
    params = json.loads(Image.open(out).text["segakit"])
    assert params["source_caption"] and len(params["captions_before"]) == 2 and len(params["captions_after"]) == 2
    assert (
        params["captions_before"][0] == params["source_caption"]
        and f"source caption: {params['source_caption']}" in stdout
    )
    # the writer wrote after-captions of its own; how often they state the change is measured, not asserted on one
    # face (62% of after-captions, 67% after the captioner's captions: docs/results/editing/report.md, segakit eval caption-writer)
    assert params["captions_after"] != params["captions_before"] and all(
        parse_caption(c) for c in params["captions_after"]
    )


def test_eval_commands(monkeypatch, capsys, tmp_path):
    code, stdout, stderr = cli(monkeypatch, capsys, "eval", "captioner", "-n", "2", "--out", tmp_path / "cap.json")
    assert code == 0, stderr
    summary = json.loads((tmp_path / "cap.json").read_text())
    assert (
        summary["n"] == 2
        and summary["mentions_per_caption"] > 0
        and "of the attributes it mentions are right" in stdout
    )
    code, _, stderr = cli(monkeypatch, capsys, "eval", "caption-writer", "--model", tmp_path / "no-writer", "-n", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "does not exist" in stderr, stderr
