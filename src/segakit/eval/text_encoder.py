"""What a text encoder can be told: distances, separations and the CLIP's zero-shot reading of attributes.

Three measures (issue 15), each a few small functions over tensors:

- **prompt-pair distance**: 1 - cosine between the *padded hidden-state sequences* (all
  ``model_max_length`` positions, flattened) of two prompts -- exactly what the U-Net's cross-attention
  reads -- reported also relative to the man/woman distance;
- **caption separation**: per attribute, between-class over within-class scatter of the same flattened
  sequences, over captions from the world's caption generator grouped by the value they state;
- **zero-shot reading** of each attribute by the CLIP (image tower against text tower) on renders:
  accuracy and AUC (one-vs-rest, macro over values for multi-valued attributes).

:func:`gate` turns the first two into a verdict: the U-Net stage (``train/unet.py``) refuses a text encoder
in which some attribute's separation or prompt distance is below ``min_ratio`` of man/woman, or in which
"a photo of" / "a drawing of" is more than ``max_nuisance`` of it apart.

    python -m segakit.eval.text_encoder                                  # the shipped model
    python -m segakit.eval.text_encoder --model runs/embedded/text_encoder/model   # any folder with text_encoder/ tokenizer/ clip/
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from segakit.world.captions import CONCEPTS, NEGATIONS, caption, parse_caption
from segakit.world.dataset import samples
from segakit.world.schema import ATTRIBUTES, BINARY, sample_face

EMBEDDED = Path(__file__).resolve().parents[1] / "assets" / "embedded"
PLAIN = "a face of a person"
REFERENCE = "man/woman"
NUISANCE = "photo/drawing"
# (name, prompt a, prompt b): the pairs. The man/woman pair is the yardstick; photo/drawing carries no image information.
PROMPT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("glasses", PLAIN, PLAIN + " with glasses"),
    ("hat", PLAIN, PLAIN + " wearing a hat"),
    ("smiling", PLAIN, PLAIN + " smiling"),
    ("bangs", PLAIN, PLAIN + " with bangs"),
    ("with/without glasses", PLAIN + " with glasses", PLAIN + " without glasses"),
    ("with/without hat", PLAIN + " wearing a hat", PLAIN + " without a hat"),
    ("smiling/frowning", "a smiling person", "a frowning person"),
    (REFERENCE, "a face of a man", "a face of a woman"),
    ("bald", PLAIN, "a face of a bald person"),
    ("light/dark skin", PLAIN + " with light skin", PLAIN + " with dark skin"),
    (NUISANCE, "a photo of a person", "a drawing of a person"),
)
# SEGA's single-concept edit prompts: each should be well apart from the others.
CONCEPT_PROMPTS: tuple[str, ...] = (
    "glasses",
    "without glasses",
    "a hat",
    "a smiling face",
    "a frowning face",
    "bangs",
    "woman",
    "man",
)
# Attributes whose separation the gate checks (the ones the first model could not be told).
GATED: tuple[str, ...] = ("glasses", "hat", "bangs", "expression")


# ------------------------------------------------------------------------------------------------ math
def sequence_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos between flattened sequences: ``a``, ``b`` (..., L, D) -> (...)."""
    return 1 - F.cosine_similarity(a.flatten(-2).double(), b.flatten(-2).double(), dim=-1)


def separation(x: torch.Tensor, labels: Sequence) -> float:
    """Between-class over within-class scatter of rows ``x`` (N, ...) grouped by ``labels``:
    ``sum_c n_c |mu_c - mu|^2 / sum_i |x_i - mu_c(i)|^2`` (trace form of Fisher's ratio)."""
    x = x.reshape(len(x), -1).double()
    mu = x.mean(0)
    between, within = 0.0, 0.0
    for value in sorted(set(labels), key=str):
        rows = x[[i for i, lab in enumerate(labels) if lab == value]]
        mu_c = rows.mean(0)
        between += len(rows) * float((mu_c - mu).pow(2).sum())
        within += float((rows - mu_c).pow(2).sum())
    return between / within if within > 0 else float("inf")


def auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count half."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


# ------------------------------------------------------------------------------------------ encoders
@torch.no_grad()
def hidden_states(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: Sequence[str], batch: int = 256
) -> torch.Tensor:
    """Last hidden states (N, L, D), padded to ``model_max_length`` as StableDiffusionPipeline does."""
    out = []
    device = next(text_encoder.parameters()).device
    for i in range(0, len(prompts), batch):
        ids = tokenizer(
            list(prompts[i : i + batch]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        out.append(text_encoder(ids.to(device))[0].float().cpu())
    return torch.cat(out)


def pair_distances(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, pairs: Sequence[tuple[str, str, str]] = PROMPT_PAIRS
) -> dict[str, dict[str, float]]:
    """``{pair name: {"distance", "relative"}}``; relative = distance / the man/woman distance."""
    h = hidden_states(text_encoder, tokenizer, [p for _, a, b in pairs for p in (a, b)])
    d = sequence_distance(h[0::2], h[1::2]).tolist()
    names = [n for n, _, _ in pairs]
    ref = d[names.index(REFERENCE)] if REFERENCE in names else 1.0
    return {n: {"distance": v, "relative": v / ref} for n, v in zip(names, d)}


def concept_distances(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, prompts: Sequence[str] = CONCEPT_PROMPTS
) -> dict[str, float]:
    """Smallest distance from each single-concept prompt to any other one, relative to man/woman."""
    h = hidden_states(text_encoder, tokenizer, list(prompts))
    d = sequence_distance(h[:, None], h[None, :])
    d.fill_diagonal_(float("inf"))
    ref = float(sequence_distance(*hidden_states(text_encoder, tokenizer, ["a face of a man", "a face of a woman"])))
    return {p: float(d[i].min()) / ref for i, p in enumerate(prompts)}


def stated_captions(n: int, seed: int) -> list[tuple[str, dict[str, object]]]:
    """``n`` non-empty captions of random faces, each with the single values it states (read back by the parser)."""
    rng = np.random.default_rng([seed, 15])
    out: list[tuple[str, dict[str, object]]] = []
    while len(out) < n:
        face = sample_face(rng)
        text = caption(face, rng)
        if text.strip():
            out.append((text, {a: next(iter(vs)) for a, vs in parse_caption(text).items() if len(vs) == 1}))
    return out


def caption_separation(
    text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, n: int = 3000, seed: int = 7, min_count: int = 10
) -> dict[str, float]:
    """Per attribute: :func:`separation` of the captions that state one value of it, grouped by that value."""
    caps = stated_captions(n, seed)
    h = hidden_states(text_encoder, tokenizer, [c for c, _ in caps])
    out = {}
    for attr in ATTRIBUTES:
        rows = [i for i, (_, st) in enumerate(caps) if attr in st]
        labels = [caps[i][1][attr] for i in rows]
        counts = {v: labels.count(v) for v in set(labels)}
        keep = [i for i, lab in zip(rows, labels) if counts[lab] >= min_count]
        if len({caps[i][1][attr] for i in keep}) >= 2:
            out[attr] = separation(h[keep], [caps[i][1][attr] for i in keep])
    return out


def value_prompts(attr: str) -> dict[object, list[str]]:
    """Zero-shot prompts of each value: its concept-only captions (as the world captions them), and the
    negations for a false binary value."""
    if attr in BINARY:
        return {True: list(CONCEPTS[attr][True]), False: list(NEGATIONS[attr])}
    return {v: list(ps) for v, ps in CONCEPTS[attr].items()}


@torch.no_grad()
def image_features(clip: CLIPModel, n: int, seed: int, start: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """The CLIP's image embeddings (n, projection_dim) of renders ``start .. start+n-1`` of ``seed``, and their labels."""
    device = next(clip.parameters()).device
    images, labels = [], []
    for s in samples(n, seed, start):
        images.append(np.asarray(s.image.convert("RGB"), dtype=np.uint8))
        labels.append(s.face.labels())
    pixels = (
        torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    )  # as the CLIP was trained
    feats = [_features(clip.get_image_features(pixel_values=pixels[i : i + 200].to(device))) for i in range(0, n, 200)]
    return torch.cat(feats).float().cpu(), labels


def linear_probe(
    clip: CLIPModel,
    n_train: int = 1000,
    n_test: int = 500,
    seed: int = 4243,
    attributes: Sequence[str] = tuple(ATTRIBUTES),
) -> dict[str, dict[str, float]]:
    """Per attribute: held-out accuracy of a logistic-regression probe on the image embeddings, next to the
    majority rate: does the image tower carry the attribute at all, whatever the text tower says?"""
    x, labels = image_features(clip, n_train + n_test, seed)
    x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    out = {}
    for attr in attributes:
        values = list(ATTRIBUTES[attr])
        y = torch.tensor([values.index(lab[attr]) for lab in labels])
        w = torch.zeros(x.shape[1], len(values), requires_grad=True)
        b = torch.zeros(len(values), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure(opt=opt, w=w, b=b, y=y) -> torch.Tensor:  # bound now: LBFGS calls it within this iteration
            opt.zero_grad()
            loss = F.cross_entropy(x[:n_train] @ w + b, y[:n_train]) + 1e-3 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float(((x[n_train:] @ w + b).argmax(1) == y[n_train:]).float().mean())
        majority = float(torch.bincount(y[n_train:], minlength=len(values)).max()) / n_test
        out[attr] = {"accuracy": acc, "majority": majority}
    return out


@torch.no_grad()
def zero_shot(
    clip: CLIPModel,
    tokenizer: CLIPTokenizer,
    n: int = 600,
    seed: int = 4242,
    attributes: Sequence[str] = tuple(ATTRIBUTES),
) -> dict[str, dict[str, float]]:
    """Per attribute: accuracy (argmax over values) and AUC of the CLIP on ``n`` renders of seed ``seed``.

    Each value's text embedding is the normalised mean of its prompts' (a prompt ensemble). AUC is
    one-vs-rest, averaged over the values present (for a binary attribute, the true-value AUC)."""
    device = next(clip.parameters()).device
    img, labels = image_features(clip, n, seed)
    img = F.normalize(img, dim=-1).to(device)
    out = {}
    for attr in attributes:
        prompts = value_prompts(attr)
        values = list(prompts)
        txt = []
        for v in values:
            ids = tokenizer(prompts[v], padding="longest", truncation=True, return_tensors="pt").input_ids.to(device)
            txt.append(
                F.normalize(
                    F.normalize(_features(clip.get_text_features(input_ids=ids)).float(), dim=-1).mean(0), dim=0
                )
            )
        sims = (img @ torch.stack(txt).T).cpu()  # (n, values)
        truth = [lab[attr] for lab in labels]
        known = [i for i, t in enumerate(truth) if t in values]
        pred = sims.argmax(1)
        acc = sum(values[int(pred[i])] == truth[i] for i in known) / max(1, len(known))
        if attr in BINARY:
            t = values.index(True)
            score = sims[:, t] - sims[:, 1 - t]
            a = auc(score[known].tolist(), [truth[i] is True for i in known])
        else:
            aucs = [
                auc((sims[known, j] - sims[known].mean(1)).tolist(), [truth[i] == v for i in known])
                for j, v in enumerate(values)
            ]
            a = float(np.nanmean(aucs))
        out[attr] = {"accuracy": acc, "auc": a}
    return out


def _features(out) -> torch.Tensor:
    # transformers 4 returns the projected features, transformers 5 an output whose pooler_output holds them
    return out if torch.is_tensor(out) else out.pooler_output


# ------------------------------------------------------------------------------------------- report
@dataclass
class TextEncoderReport:
    pairs: dict[str, dict[str, float]]
    concepts: dict[str, float]
    separation: dict[str, float]
    zero_shot: dict[str, dict[str, float]]
    probe: dict[str, dict[str, float]] = field(default_factory=dict)

    def separation_ratio(self, attr: str) -> float:
        """An attribute's separation relative to the presentation's (the man/woman yardstick)."""
        return self.separation[attr] / self.separation["presentation"]


def measure(
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    clip: CLIPModel | None = None,
    n_captions: int = 3000,
    n_images: int = 600,
    n_probe: int = 0,
) -> TextEncoderReport:
    """All the measures; the CLIP ones only when ``clip`` is given (the probe trains on ``n_probe`` renders, tests on half as many)."""
    pairs = pair_distances(text_encoder, tokenizer)
    sep = caption_separation(text_encoder, tokenizer, n_captions)
    zs = zero_shot(clip, tokenizer, n_images) if clip is not None and n_images else {}
    probe = linear_probe(clip, n_probe, n_probe // 2) if clip is not None and n_probe else {}
    return TextEncoderReport(pairs, concept_distances(text_encoder, tokenizer), sep, zs, probe)


@dataclass
class GateResult:
    passed: bool
    failures: list[str]  # one phrase per failed check
    separation: dict[str, float]  # per attribute, relative to the presentation's
    pairs: dict[str, float]  # per prompt pair, relative to man/woman


def gate_verdict(
    pairs: dict[str, float], separation: dict[str, float], min_ratio: float, max_nuisance: float
) -> GateResult:
    """Pass when every attribute's caption separation and every attribute prompt pair is at least ``min_ratio``
    of the presentation's (man/woman), and the nuisance pair at most ``max_nuisance`` of it."""
    failures = [f"{a} separation {r:.3f}" for a, r in separation.items() if r < min_ratio]
    failures += [
        f"'{n}' distance {r:.3f}" for n, r in pairs.items() if n not in (REFERENCE, NUISANCE) and r < min_ratio
    ]
    if pairs.get(NUISANCE, 0.0) > max_nuisance:
        failures.append(f"'{NUISANCE}' distance {pairs[NUISANCE]:.3f} (at most {max_nuisance})")
    return GateResult(not failures, failures, separation, pairs)


def gate(
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    min_ratio: float = 0.4,
    max_nuisance: float = 0.1,
    n_captions: int = 1500,
) -> GateResult:
    """Can this text encoder be told every attribute? (See :func:`gate_verdict`; a few seconds on one core.)"""
    pairs = {n: v["relative"] for n, v in pair_distances(text_encoder, tokenizer).items()}
    sep = caption_separation(text_encoder, tokenizer, n_captions)
    ref = sep.get("presentation", float("nan"))
    return gate_verdict(pairs, {a: v / ref for a, v in sep.items() if a != "presentation"}, min_ratio, max_nuisance)


def load(folder: Path) -> tuple[CLIPTextModel, CLIPTokenizer, CLIPModel | None]:
    """A folder laid out like the embedded model: ``text_encoder/``, ``tokenizer/`` and optionally ``clip/``."""
    folder = Path(folder)
    te = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32, use_safetensors=True).eval()
    tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    clip = None
    if (folder / "clip" / "config.json").is_file():
        clip = CLIPModel.from_pretrained(folder / "clip", dtype=torch.float32, use_safetensors=True).eval()
    return te, tok, clip


def markdown(report: TextEncoderReport, title: str = "") -> str:
    lines = [f"### {title}" if title else "", "", "| prompt pair | 1 - cos | / man-woman |", "|---|---:|---:|"]
    lines += [f"| {n} | {v['distance']:.4f} | {v['relative']:.3f} |" for n, v in report.pairs.items()]
    lines += [
        "",
        "| attribute | separation | / presentation | zero-shot acc | zero-shot AUC | image probe acc | majority |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for attr in ATTRIBUTES:
        s = report.separation.get(attr)
        z = report.zero_shot.get(attr, {})
        p = report.probe.get(attr, {})
        cells = [
            f"{s:.3f}" if s is not None else "-",
            f"{report.separation_ratio(attr):.3f}" if s is not None else "-",
            f"{z['accuracy']:.3f}" if z else "-",
            f"{z['auc']:.3f}" if z else "-",
            f"{p['accuracy']:.3f}" if p else "-",
            f"{p['majority']:.3f}" if p else "-",
        ]
        lines.append(f"| {attr} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "nearest other single-concept prompt (/ man-woman): "
        + ", ".join(f"{p!r} {v:.3f}" for p, v in report.concepts.items()),
    ]
    return "\n".join(lines).strip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(EMBEDDED), help="folder with text_encoder/, tokenizer/ and clip/")
    parser.add_argument("--n_captions", type=int, default=3000)
    parser.add_argument("--n_images", type=int, default=600)
    parser.add_argument("--n_probe", type=int, default=1000, help="renders to fit the image probe on (0 = no probe)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    te, tok, clip = load(Path(args.model))
    report = measure(te, tok, clip, args.n_captions, args.n_images, args.n_probe)
    print(markdown(report, args.model))
    verdict = gate_verdict(
        {n: v["relative"] for n, v in report.pairs.items()},
        {a: report.separation_ratio(a) for a in report.separation if a != "presentation"},
        0.4,
        0.1,
    )
    print(
        "gate (0.4 of man/woman, nuisance at most 0.1): "
        + ("passed" if verdict.passed else "failed: " + ", ".join(verdict.failures))
    )
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=1, default=str))


if __name__ == "__main__":
    main()
