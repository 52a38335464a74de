"""Deterministic renderer: a :class:`~segakit.world.schema.Face` -> a 64x64 RGB cartoon portrait.

Drawn with PIL at 4x (256x256) and downsampled by a 4x4 box average (antialiasing). The torso (role clothing) is drawn
upright; the head (hair, face, glasses, hat) is drawn on its own layer and tilted about the neck by
``face.rotation`` degrees. Same face -> same pixels (no randomness in here; the nuisance lives in the Face).

Geometry is in units of the head's half-width ``rx`` and half-height ``ry`` around its centre ``(cx, cy)``.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from segakit.world.schema import NAMED_COLORS, RGB, Face

SIZE = 64
SCALE = 4
CANVAS = SIZE * SCALE

SKIN: dict[str, RGB] = {
    "light": (250, 226, 205),
    "medium-light": (232, 190, 150),
    "medium": (198, 148, 104),
    "medium-dark": (150, 105, 70),
    "dark": (95, 64, 45),
}
HAIR: dict[str, RGB] = {
    "black": (35, 30, 32),
    "brown": (110, 66, 34),
    "blond": (238, 198, 80),
    "red": (200, 72, 28),
    "gray": (172, 172, 178),
}
WHITE_COAT: RGB = (242, 242, 242)
SCRUBS: RGB = (70, 172, 168)
REFLECTIVE: RGB = (240, 228, 40)
LIPSTICK: RGB = (205, 25, 55)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _dark(c: RGB, f: float = 0.55) -> RGB:
    return (round(c[0] * f), round(c[1] * f), round(c[2] * f))


def skin_rgb(face: Face) -> RGB:
    """Skin colour; the zombie look keeps the tone's luminance (so skin stays readable) but turns it green-grey."""
    c = SKIN[face.skin]
    if not face.horror:
        return c
    lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    return (min(255, round(lum * 0.80)), min(255, round(lum * 0.98)), min(255, round(lum * 0.76)))


# Unit head outlines (40 points, angle 0 = right, clockwise in image coordinates since y points down).
def _unit_head(kind: str) -> list[tuple[float, float]]:
    pts = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        c, s = math.cos(t), math.sin(t)
        if s <= 0:  # upper half: ellipse
            x, y = c, s
        elif kind == "man":  # squarer jaw: superellipse
            x = math.copysign(abs(c) ** 0.7, c)
            y = s**0.85
        else:  # egg: narrower towards a rounder, softer chin
            x = c * (1 - 0.28 * s)
            y = s
        pts.append((x, y))
    return pts


_HEAD = {"man": _unit_head("man"), "woman": _unit_head("woman")}


class _Pen:
    """Coordinates in head units -> canvas pixels."""

    def __init__(self, cx: float, cy: float, rx: float, ry: float) -> None:
        self.cx, self.cy, self.rx, self.ry = cx, cy, rx, ry

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.rx, self.cy + v * self.ry)

    def box(self, u: float, v: float, hu: float, hv: float) -> tuple[float, float, float, float]:
        return (
            self.cx + (u - hu) * self.rx,
            self.cy + (v - hv) * self.ry,
            self.cx + (u + hu) * self.rx,
            self.cy + (v + hv) * self.ry,
        )

    def poly(self, pts, su: float = 1.0, sv: float = 1.0) -> list[tuple[float, float]]:
        return [(self.cx + x * su * self.rx, self.cy + y * sv * self.ry) for x, y in pts]


def render(face: Face) -> Image.Image:
    """Draw ``face`` as a 64x64 RGB image (deterministic)."""
    return render_large(face).reduce(SCALE)  # exact 4x4 box average: antialiased and ~10x faster than Lanczos


def render_large(face: Face) -> Image.Image:
    """The 256x256 drawing before downsampling (for figures and debugging)."""
    s = face.head_scale
    man = face.presentation == "man"
    rx = (57.0 if man else 52.0) * s
    ry = 66.0 * s
    cx = CANVAS / 2 + face.head_dx
    cy = 114.0 + face.head_dy
    pen = _Pen(cx, cy, rx, ry)
    skin = skin_rgb(face)

    img = Image.new("RGB", (CANVAS, CANVAS), face.background)
    d = ImageDraw.Draw(img)
    _torso(d, pen, face, skin, man)

    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    h = ImageDraw.Draw(layer)
    _head(h, pen, face, skin, man)
    if face.rotation:
        layer = layer.rotate(face.rotation, resample=Image.Resampling.NEAREST, center=pen.p(0, 1.0))
    img.paste(layer, (0, 0), layer)
    return img


# ----------------------------------------------------------------------------------------------- torso
def _torso(d: ImageDraw.ImageDraw, pen: _Pen, face: Face, skin: RGB, man: bool) -> None:
    y_sh = pen.cy + 1.12 * pen.ry  # shoulder line
    half = (1.95 if man else 1.7) * pen.rx
    nw = (0.34 if man else 0.27) * pen.rx
    cx, rx, ry = pen.cx, pen.rx, pen.ry
    bottom = CANVAS + 40
    # neck
    d.rectangle((cx - nw, pen.cy + 0.6 * ry, cx + nw, y_sh + 0.3 * ry), fill=skin, outline=_dark(skin), width=3)

    role = face.role
    if role == "none":
        body = face.shirt_color
    elif role in ("doctor", "chef"):
        body = WHITE_COAT
    elif role == "nurse":
        body = SCRUBS
    else:  # firefighter: khaki or black turnout gear
        body = (140, 112, 52) if face.accent_color[0] > 100 or face.accent_color[2] > 150 else (48, 46, 50)
    d.rounded_rectangle(
        (cx - half, y_sh, cx + half, bottom), radius=int(0.9 * rx), fill=body, outline=_dark(body, 0.6), width=4
    )

    if role == "none":  # round neckline
        d.chord(
            (cx - 0.5 * rx, y_sh - 0.3 * ry, cx + 0.5 * rx, y_sh + 0.28 * ry),
            0,
            180,
            fill=skin,
            outline=_dark(body, 0.6),
            width=3,
        )
    elif role == "doctor":
        shirt = (170, 200, 240)
        d.polygon([(cx - 0.55 * rx, y_sh), (cx + 0.55 * rx, y_sh), (cx, CANVAS)], fill=shirt)
        d.polygon(
            [
                (cx - 0.11 * rx, y_sh + 0.12 * ry),
                (cx + 0.11 * rx, y_sh + 0.12 * ry),
                (cx + 0.17 * rx, CANVAS),
                (cx - 0.17 * rx, CANVAS),
            ],
            fill=face.accent_color,
        )
        lapel = (150, 150, 155)
        d.line([(cx - 0.55 * rx, y_sh), (cx - 0.05 * rx, CANVAS)], fill=lapel, width=5)
        d.line([(cx + 0.55 * rx, y_sh), (cx + 0.05 * rx, CANVAS)], fill=lapel, width=5)
        steth = (70, 70, 80)
        d.line([(cx - 0.62 * rx, y_sh - 0.05 * ry), (cx - 0.8 * rx, y_sh + 0.75 * ry)], fill=steth, width=8)
        d.line([(cx + 0.62 * rx, y_sh - 0.05 * ry), (cx + 0.85 * rx, y_sh + 0.55 * ry)], fill=steth, width=8)
        d.ellipse(pen.box(0.85, (y_sh - pen.cy) / ry + 0.62, 0.17, 0.15), fill=(185, 185, 195), outline=steth, width=5)
    elif role == "nurse":
        d.polygon(
            [(cx - 0.42 * rx, y_sh - 0.02 * ry), (cx + 0.42 * rx, y_sh - 0.02 * ry), (cx, y_sh + 0.6 * ry)],
            fill=skin,
            outline=_dark(body, 0.6),
            width=3,
        )
        bx, by = cx - 1.15 * rx, y_sh + 0.35 * ry
        w = 0.42 * rx
        d.rectangle((bx, by, bx + w, by + w), fill=(255, 255, 255), outline=(120, 120, 120), width=2)
        red = (215, 30, 35)
        d.rectangle((bx + 0.36 * w, by + 0.12 * w, bx + 0.64 * w, by + 0.88 * w), fill=red)
        d.rectangle((bx + 0.12 * w, by + 0.36 * w, bx + 0.88 * w, by + 0.64 * w), fill=red)
    elif role == "chef":
        d.polygon(
            [(cx - 0.6 * rx, y_sh - 0.05 * ry), (cx + 0.6 * rx, y_sh - 0.05 * ry), (cx, y_sh + 0.5 * ry)],
            fill=face.accent_color,
        )
        for u in (-0.45, 0.45):
            for k in range(3):
                d.ellipse(pen.box(u, (y_sh - pen.cy) / ry + 0.62 + 0.33 * k, 0.09, 0.075), fill=(40, 40, 45))
        d.line([(cx + 0.2 * rx, y_sh + 0.5 * ry), (cx + 0.2 * rx, CANVAS)], fill=(170, 170, 170), width=3)
    else:  # firefighter: high collar + two reflective stripes
        d.rectangle(
            (cx - nw - 0.15 * rx, y_sh - 0.18 * ry, cx + nw + 0.15 * rx, y_sh + 0.12 * ry),
            fill=body,
            outline=_dark(body, 0.6),
            width=3,
        )
        for k in range(2):
            y0 = y_sh + (0.45 + 0.45 * k) * ry
            d.rectangle((cx - half + 4, y0, cx + half - 4, y0 + 0.17 * ry), fill=REFLECTIVE)
            d.rectangle((cx - half + 4, y0 + 0.065 * ry, cx + half - 4, y0 + 0.105 * ry), fill=(200, 200, 205))
        d.line([(cx, y_sh + 0.12 * ry), (cx, CANVAS)], fill=_dark(body, 0.5), width=4)


# ------------------------------------------------------------------------------------------------ head
def _head(h: ImageDraw.ImageDraw, pen: _Pen, face: Face, skin: RGB, man: bool) -> None:
    hair = HAIR[face.hair_color]
    hair_line = _dark(hair, 0.55) if face.hair_color != "black" else (95, 90, 100)  # black hair: a lighter edge
    sheen = _mix(hair, (255, 255, 255), 0.35)
    skin_line = _dark(skin, 0.6)
    style = face.hair_style

    # 1. hair behind the head
    if style == "long":
        h.polygon(
            pen.poly(
                [
                    (-1.08, -0.55),
                    (-1.02, -0.9),
                    (-0.6, -1.12),
                    (0, -1.17),
                    (0.6, -1.12),
                    (1.02, -0.9),
                    (1.08, -0.55),
                    (1.18, 0.4),
                    (1.3, 1.45),
                    (-1.3, 1.45),
                    (-1.18, 0.4),
                ]
            ),
            fill=hair,
            outline=hair_line,
            width=4,
        )
    elif style == "curly":
        for i in range(15):
            t = math.pi * (0.72 + 1.56 * i / 14)
            u, v = 1.05 * math.cos(t), 1.02 * math.sin(t)
            h.ellipse(pen.box(u, v, 0.3, 0.26), fill=hair, outline=hair_line, width=4)

    # 2. ears and head
    for u in (-1.0, 1.0):
        h.ellipse(pen.box(u, 0.02, 0.16, 0.2), fill=skin, outline=skin_line, width=3)
    h.polygon(pen.poly(_HEAD["woman" if not man else "man"]), fill=skin, outline=skin_line, width=3)
    if style == "bald" and not face.hat:  # scalp shine
        h.ellipse(pen.box(-0.25, -0.78, 0.28, 0.1), fill=_mix(skin, (255, 255, 255), 0.45))

    # 3. cheeks: blush (makeup), scar (zombie)
    if face.makeup:
        for u in (-0.55, 0.55):
            h.ellipse(pen.box(u, 0.3, 0.17, 0.09), fill=_mix(skin, (240, 90, 120), 0.55))
    if face.horror:
        a, b = pen.p(0.35, 0.12), pen.p(0.72, 0.45)
        h.line([a, b], fill=(110, 30, 35), width=5)
        for k in range(1, 4):
            m = (a[0] + (b[0] - a[0]) * k / 4, a[1] + (b[1] - a[1]) * k / 4)
            h.line([(m[0] - 7, m[1] + 6), (m[0] + 7, m[1] - 6)], fill=(60, 25, 30), width=3)

    # 4. beard (with a skin patch so the mouth stays readable)
    if face.beard:
        if face.beard_style == "full":
            pts = [(x * 1.05, y * 1.04) for x, y in _HEAD["man" if man else "woman"] if y > 0.12]
            top = [(0.98, 0.05), (0.72, 0.3), (0.45, 0.4), (-0.45, 0.4), (-0.72, 0.3)]
            h.polygon(pen.poly([(-0.98, 0.05)] + sorted(pts) + top), fill=hair, outline=hair_line, width=3)
        else:
            h.ellipse(pen.box(0, 0.82, 0.36, 0.3), fill=hair, outline=hair_line, width=3)
        h.ellipse(pen.box(0, 0.5, 0.4, 0.13), fill=skin)
        h.rounded_rectangle(pen.box(0, 0.33, 0.42, 0.065), radius=6, fill=hair, outline=hair_line, width=2)

    # 5. glasses lenses (tinted skin behind the eyes)
    eye_v, eye_u = -0.02, 0.38
    if face.glasses:
        lens = _mix(skin, (215, 238, 255), 0.55)
        for u in (-eye_u, eye_u):
            if face.glasses_style == "round":
                h.ellipse(pen.box(u, eye_v, 0.27, 0.19), fill=lens)
            else:
                h.rectangle(pen.box(u, eye_v, 0.28, 0.17), fill=lens)

    # 6. eye rings (zombie), eye shadow (makeup), eyes, lashes
    for u in (-eye_u, eye_u):
        if face.horror:
            h.ellipse(pen.box(u, eye_v + 0.01, 0.25, 0.16), fill=(78, 42, 66))
        if face.makeup:
            h.ellipse(pen.box(u, eye_v - 0.07, 0.22, 0.11), fill=face.makeup_color)
        h.ellipse(pen.box(u, eye_v, 0.17, 0.1), fill=(250, 250, 250), outline=(40, 30, 30), width=2)
        iris = (205, 205, 185) if face.horror else face.eye_color
        h.ellipse(pen.box(u, eye_v + 0.005, 0.085, 0.085 * pen.rx / pen.ry), fill=iris)
        h.ellipse(pen.box(u, eye_v + 0.005, 0.035, 0.035 * pen.rx / pen.ry), fill=(15, 15, 15))
        if not man:  # eyeliner and lashes
            h.arc(pen.box(u, eye_v, 0.17, 0.1), 185, 355, fill=(25, 20, 20), width=5)
            sgn = 1 if u > 0 else -1
            for k, ang in enumerate((-0.6, -0.25, 0.1)):
                x0, y0 = pen.p(u + sgn * (0.1 + 0.035 * k), eye_v - 0.085 + 0.02 * k)
                h.line(
                    [(x0, y0), (x0 + sgn * 12 * math.cos(ang), y0 - 12 * math.cos(ang) + ang * 4 - 4)],
                    fill=(25, 20, 20),
                    width=4,
                )

    # 7. brows: thick and straight (man) or thin and arched (woman); frown pulls the inner ends down
    brow = _dark(hair, 0.6) if face.hair_color != "black" else (30, 25, 25)
    inner = 0.15 if face.expression == "frown" else (-0.04 if face.expression == "smile" else 0.0)
    for sgn in (-1, 1):
        u_in, u_out = sgn * 0.2, sgn * 0.6
        v = eye_v - 0.2
        if man:
            h.polygon(
                [
                    pen.p(u_in, v - 0.04 + inner),
                    pen.p(u_out, v - 0.06),
                    pen.p(u_out, v + 0.03),
                    pen.p(u_in, v + 0.05 + inner),
                ],
                fill=brow,
            )
        else:
            h.line(
                [pen.p(u_in, v + inner), pen.p(sgn * 0.4, v - 0.06 + inner / 2), pen.p(u_out, v - 0.01)],
                fill=brow,
                width=4,
                joint="curve",
            )

    # 8. nose
    h.arc(pen.box(0, 0.2, 0.09, 0.07), 20, 160, fill=skin_line, width=4)

    # 9. mouth
    lum = 0.299 * skin[0] + 0.587 * skin[1] + 0.114 * skin[2]
    lips = LIPSTICK if face.makeup else (_dark(skin, 0.45) if lum > 125 else (205, 125, 118))  # contrast on dark skin
    mv = 0.5
    if face.expression == "smile":  # open, upturned mouth with teeth
        h.chord(
            pen.box(0, mv - 0.06, 0.42, 0.25), 0, 180, fill=(120, 25, 35), outline=lips, width=8 if face.makeup else 5
        )
        h.chord(pen.box(0, mv - 0.06, 0.3, 0.09), 0, 180, fill=(250, 250, 250))
    elif face.expression == "neutral":  # straight line
        h.line([pen.p(-0.26, mv), pen.p(0.26, mv)], fill=lips, width=10 if face.makeup else 7)
    else:  # strongly downturned arc and a furrow between the brows
        h.arc(pen.box(0, mv + 0.2, 0.36, 0.26), 200, 340, fill=lips, width=13 if face.makeup else 10)
        for u in (-0.06, 0.06):
            h.line([pen.p(u, eye_v - 0.24), pen.p(u * 0.6, eye_v - 0.12)], fill=skin_line, width=4)

    # 10. glasses frames, bridge, temples
    if face.glasses:
        fc = NAMED_COLORS[face.glasses_color]
        for u in (-eye_u, eye_u):
            if face.glasses_style == "round":
                h.ellipse(pen.box(u, eye_v, 0.27, 0.19), outline=fc, width=7)
            else:
                h.rectangle(pen.box(u, eye_v, 0.28, 0.17), outline=fc, width=7)
        h.line([pen.p(-eye_u + 0.26, eye_v - 0.03), pen.p(eye_u - 0.26, eye_v - 0.03)], fill=fc, width=6)
        h.line([pen.p(-eye_u - 0.27, eye_v - 0.03), pen.p(-0.98, eye_v - 0.05)], fill=fc, width=5)
        h.line([pen.p(eye_u + 0.27, eye_v - 0.03), pen.p(0.98, eye_v - 0.05)], fill=fc, width=5)

    # 11. hair on top of the head, bangs
    if style != "bald":
        outer = [
            (1.09 * math.cos(t), 1.08 * math.sin(t)) for t in (math.pi * (0.96 + 1.08 * i / 16) for i in range(17))
        ]
        hairline = []
        for i in range(13):
            sv = 1 - 2 * i / 12
            hairline.append((sv * 0.92, -0.74 + abs(sv) ** 2.5 * 0.8))
        h.polygon(pen.poly(outer + hairline), fill=hair, outline=hair_line, width=4)
        if style == "curly":
            for u, v in hairline[1:-1:2]:
                h.ellipse(pen.box(u, v - 0.04, 0.14, 0.1), fill=hair, outline=hair_line, width=3)
        if face.bangs:
            pts = [(-0.96, -0.3), (-0.85, -0.72), (0, -0.86), (0.85, -0.72), (0.96, -0.3)]
            teeth = 8
            for i in range(teeth + 1):
                u = 0.9 - 1.8 * i / teeth
                pts.append((u, -0.27 if i % 2 == 0 else -0.33))
            h.polygon(pen.poly(pts), fill=hair, outline=hair_line, width=3)
            for u in (-0.55, -0.2, 0.15, 0.5):  # strands
                h.line([pen.p(u + 0.05, -0.62), pen.p(u - 0.03, -0.38)], fill=sheen, width=4)

    # 12. hat
    if face.hat:
        _hat(h, pen, face)


def _hat(h: ImageDraw.ImageDraw, pen: _Pen, face: Face) -> None:
    col = NAMED_COLORS[face.hat_color]
    line = _dark(col, 0.5)
    band = _dark(col, 0.7)
    brim_v = -0.6
    if face.hat_style == "beanie":
        h.chord(pen.box(0, brim_v, 1.12, 0.74), 180, 360, fill=col, outline=line, width=4)
        h.rounded_rectangle(pen.box(0, brim_v - 0.08, 1.14, 0.11), radius=8, fill=band, outline=line, width=4)
        h.ellipse(pen.box(0, brim_v - 0.74, 0.15, 0.12), fill=(245, 245, 245), outline=line, width=3)
    elif face.hat_style == "cap":
        h.chord(pen.box(0, brim_v, 1.08, 0.66), 180, 360, fill=col, outline=line, width=4)
        side = 1 if face.head_dx >= 0 else -1
        h.ellipse(pen.box(side * 0.95, brim_v - 0.02, 0.8, 0.11), fill=band, outline=line, width=4)
        h.ellipse(pen.box(0, brim_v - 0.66, 0.09, 0.06), fill=band)
    else:  # fedora
        h.rounded_rectangle(pen.box(0, brim_v - 0.36, 0.82, 0.38), radius=18, fill=col, outline=line, width=4)
        h.rectangle(pen.box(0, brim_v - 0.13, 0.82, 0.07), fill=(35, 30, 35))
        h.ellipse(pen.box(0, brim_v + 0.02, 1.55, 0.13), fill=col, outline=line, width=4)
