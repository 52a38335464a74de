"""The study's figures, drawn from the cached results: per pair the source, the instruction, the captions, each
method's result and the target; per multi-turn session each method's three turns beside the gold ones."""

from __future__ import annotations

from PIL import Image, ImageDraw

from segakit.eval.editing_study.items import Turn, image_of

SCALE = 2
SIDE = 64 * SCALE
LINE = 12
LABEL_W = 120


def _cell(image: Image.Image) -> Image.Image:
    return image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.NEAREST)


def pairs_figure(turns: list[Turn], methods: list[str], images: dict, notes: dict[str, str]) -> Image.Image:
    """One block per pair: text lines (instruction, source caption, target caption, and ``notes[item]``: the SEGA
    concepts, the caption writer's "after" caption), then source | each method | target."""
    heads = ["source", *methods, "target"]
    texts_per = 4
    block = texts_per * LINE + SIDE + 6
    sheet = Image.new("RGB", (len(heads) * SIDE, LINE + 2 + len(turns) * block), "white")
    draw = ImageDraw.Draw(sheet)
    for c, head in enumerate(heads):
        draw.text((c * SIDE + 2, 0), head[:21], fill="black")
    for r, t in enumerate(turns):
        y = LINE + 2 + r * block
        lines = [f"instruction: {t.instruction}", f"source caption: {t.source_caption}", f"target caption: {t.target_caption}",
                 notes.get(t.item, "")]  # fmt: skip
        for k, line in enumerate(lines):
            draw.text((2, y + k * LINE), line[: len(heads) * SIDE // 6], fill="black" if k else "darkblue")
        cells = [t.source_image, *(image_of(images[(m, t.item, 1)]) for m in methods), t.target_image]
        for c, im in enumerate(cells):
            sheet.paste(_cell(im), (c * SIDE, y + texts_per * LINE))
    return sheet


def sessions_figure(sessions: list[list[Turn]], methods: list[str], images: dict) -> Image.Image:
    """One block per session: its instructions, then a row of gold images and a row per method (source, turn 1, ...)."""
    turns = max(len(s) for s in sessions)
    width = LABEL_W + (turns + 1) * SIDE
    block = (turns + 1) * LINE + (len(methods) + 1) * SIDE + 8
    sheet = Image.new("RGB", (width, len(sessions) * block), "white")
    draw = ImageDraw.Draw(sheet)
    for b, session in enumerate(sessions):
        y = b * block
        draw.text((2, y), f"{session[0].item}: {session[0].source_caption}"[: width // 6], fill="darkblue")
        for k, t in enumerate(session):
            draw.text((2, y + (k + 1) * LINE), f"turn {t.step}: {t.instruction}"[: width // 6], fill="black")
        y += (turns + 1) * LINE
        rows = [("gold", [session[0].input_image, *(t.target_image for t in session)])]
        rows += [
            (m, [session[0].input_image, *(image_of(images[(m, t.item, t.step)]) for t in session)]) for m in methods
        ]
        for r, (label, cells) in enumerate(rows):
            draw.text((2, y + r * SIDE + SIDE // 2), label[:19], fill="black")
            for c, im in enumerate(cells):
                sheet.paste(_cell(im), (LABEL_W + c * SIDE, y + r * SIDE))
    return sheet
