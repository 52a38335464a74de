"""The embedded model's quality table, judged by the faces world's oracle.

    segakit eval embedded --out docs/results/embedded      # the full table (hours on a 2-core CPU)

Measures (issue "embedded default model", section "Done means"):

- text faithfulness: prompts naming 1-3 attribute values, several seeds each; share of named values the
  oracle finds in the images;
- prior fidelity: attribute-value frequencies for a neutral prompt against the training prior;
- image quality: Frechet distance of oracle features, generated vs rendered, next to the same distance
  for the autoencoder's reconstructions of renders (the floor);
- SEGA success: adding each target to the neutral prompt, on seeds whose plain image lacked it;
- per attribute, what the text side can tell (issue 15): separation of caption embeddings relative to
  man/woman, the model's CLIP zero-shot accuracy and AUC on renders, and text faithfulness at guidance
  3 / 7.5 / 15 (whether more guidance helps says whether the words reach the U-Net at all).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segakit.core.autoencoder import autoencoder_round_trip
from segakit.eval.frechet import frechet_distance
from segakit.eval.isolation import isolation
from segakit.eval.targets import ADDITIONS, GENDER, Target, other_gender
from segakit.sega.defaults import EMBEDDED_EDIT
from segakit.sega.guidance import Edit

Progress = Callable[[int], None]
ORACLE_SIZE = 64


@dataclass
class QualityConfig:
    prompt: str = "a face of a person"
    steps: int = 25
    guidance: float = 7.5
    batch: int = 16
    n_prompts: int = 100
    prompt_seeds: int = 4
    prior_seeds: int = 500
    fid_n: int = 2000
    sega_seeds: int = 50
    sega_scan: int = 600  # plain seeds scanned to find sega_seeds lacking each target
    edit: Edit = field(default_factory=lambda: EMBEDDED_EDIT)
    seed: int = 0
    guidance_sweep: tuple[float, ...] = (3.0, 15.0)  # faithfulness again at these guidance scales (besides `guidance`)
    te_captions: int = 3000  # world captions for the text encoder's separation (0 = skip the text-encoder columns)
    te_images: int = 600  # renders for the CLIP's zero-shot accuracy
    guidance_refresh: int = 1  # unconditional estimate every K steps (segakit.sega.guidance.ConceptRefresh; 1: exact)
    momentum: float = 0.1  # SEGA's momentum scale for the additions (the pipeline's default)


def sample_images(pipe, prompt: str, seeds: Sequence[int], steps: int, guidance: float, batch: int,
                  edits: Sequence[Edit] = (), progress: Progress | None = None, directions: Sequence = (),
                  edit_refresh: int = 1, guidance_refresh: int = 1, momentum: float = 0.1) -> torch.Tensor:  # fmt: skip
    """Images (N, 3, 64, 64) in [0, 1], one generator per seed so each image is its seed's alone; ``directions``:
    h-space offsets (``Direction.at(strength)``) added as ``SegaPipeline`` adds them; ``edit_refresh``: concept
    refresh (1: exact SEGA); ``guidance_refresh``: the same for classifier-free guidance; ``momentum``: SEGA's
    momentum scale (the pipeline's default, 0.1)."""
    out = []
    for start in range(0, len(seeds), batch):
        chunk = list(seeds[start : start + batch])
        images = pipe(
            prompt, num_inference_steps=steps, guidance_scale=guidance, num_images_per_prompt=len(chunk),
            generator=[torch.Generator().manual_seed(int(s)) for s in chunk], edits=list(edits), directions=list(directions), output_type="pt",
            edit_refresh=edit_refresh, guidance_refresh=guidance_refresh, edit_momentum_scale=momentum,
        ).images.float().cpu()  # fmt: skip
        if images.shape[-1] != ORACLE_SIZE:
            images = F.interpolate(
                images, size=(ORACLE_SIZE, ORACLE_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        out.append(images.clamp(0, 1))
        if progress:
            progress(len(chunk))
    return torch.cat(out) if out else torch.zeros(0, 3, ORACLE_SIZE, ORACLE_SIZE)


def faithfulness_prompts(n: int, seed: int) -> list[tuple[str, dict]]:
    """``n`` prompts naming 1-3 attribute values each, with the values they name (read back by the parser)."""
    from segakit.world.captions import CaptionPlan, parse_caption, realize
    from segakit.world.schema import ATTRIBUTES, sample_face

    rng = np.random.default_rng([seed, 4242])
    prompts: list[tuple[str, dict]] = []
    while len(prompts) < n:
        face = sample_face(rng)
        k = int(rng.integers(1, 4))
        attrs = [str(a) for a in rng.choice(list(ATTRIBUTES), size=k, replace=False)]
        plan = CaptionPlan(
            "full", attrs, {a: rng.random(4) for a in ATTRIBUTES}, int(rng.integers(7)), float(rng.random())
        )
        text = realize(plan, face)
        named = {a: next(iter(v)) for a, v in parse_caption(text).items() if len(v) == 1}
        if 1 <= len(named) <= 3:
            prompts.append((text, named))
    return prompts


FIGURE_ROWS = 8  # prompts (or SEGA targets) shown in a figure
FIGURE_COLS = 8


def to_pil(images: torch.Tensor) -> list:
    """(N, 3, H, W) in [0, 1] -> PIL images."""
    from PIL import Image

    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def text_faithfulness(
    pipe,
    oracle,
    cfg: QualityConfig,
    progress: Progress | None = None,
    figures: dict | None = None,
    guidance: float | None = None,
) -> dict:
    """Share of the named values the oracle finds, at ``guidance`` (default ``cfg.guidance``)."""
    from segakit.core.images import grid

    guidance = cfg.guidance if guidance is None else guidance

    prompts = faithfulness_prompts(cfg.n_prompts, cfg.seed)
    hits: dict[str, list[bool]] = {}
    shown, shown_labels = [], []
    for i, (text, named) in enumerate(prompts):
        seeds = [cfg.seed + 1000 * i + j for j in range(cfg.prompt_seeds)]
        images = sample_images(
            pipe, text, seeds, cfg.steps, guidance, cfg.batch, progress=progress, guidance_refresh=cfg.guidance_refresh
        )
        labels = oracle.predict(images)
        if i < FIGURE_ROWS and figures is not None:
            shown += to_pil(images[:FIGURE_COLS])
            shown_labels.append(text if len(text) <= 40 else text[:38] + "..")
        for attr, value in named.items():
            for lab in labels:
                if attr == "hair_color" and lab["hair_style"] == "bald":
                    hits.setdefault(attr, []).append(False)  # named hair colour, but no hair drawn
                else:
                    hits.setdefault(attr, []).append(lab[attr] == value)
    if figures is not None and shown:
        figures["samples-prompts.png"] = grid(
            shown, cols=min(cfg.prompt_seeds, FIGURE_COLS), row_labels=shown_labels, scale=2
        )
    total = [h for v in hits.values() for h in v]
    return {
        "prompts": len(prompts),
        "guidance": guidance,
        "seeds_per_prompt": cfg.prompt_seeds,
        "named_values": len(total),
        "present": float(np.mean(total)) if total else float("nan"),
        "per_attribute": {a: float(np.mean(v)) for a, v in sorted(hits.items())},
        "examples": [t for t, _ in prompts[:5]],
    }


def neutral_seeds(cfg: QualityConfig, n: int) -> list[int]:
    """Seeds of the plain images of ``cfg.prompt``; prior fidelity, the Frechet distance and the SEGA scan
    all draw from the start of this one list, so a full run generates each plain image once."""
    return [cfg.seed + 100_000 + i for i in range(n)]


def neutral_images(
    pipe, cfg: QualityConfig, n: int, images: torch.Tensor | None, progress: Progress | None
) -> torch.Tensor:
    if images is not None and images.shape[0] >= n:
        return images[:n]
    seeds = neutral_seeds(cfg, n)
    return sample_images(
        pipe,
        cfg.prompt,
        seeds,
        cfg.steps,
        cfg.guidance,
        cfg.batch,
        progress=progress,
        guidance_refresh=cfg.guidance_refresh,
    )


def prior_fidelity(
    pipe, oracle, cfg: QualityConfig, progress: Progress | None = None, images: torch.Tensor | None = None
) -> dict:
    from segakit.world.schema import ATTRIBUTES, PRIORS

    seeds = neutral_seeds(cfg, cfg.prior_seeds)
    labels = oracle.predict(neutral_images(pipe, cfg, cfg.prior_seeds, images, progress))
    table, worst = {}, 0.0
    for attr, values in ATTRIBUTES.items():
        rows = [lab for lab in labels if not (attr == "hair_color" and lab["hair_style"] == "bald")]
        table[attr] = {}
        for v in values:
            gen = sum(lab[attr] == v for lab in rows) / max(len(rows), 1)
            prior = float(PRIORS[attr][v])
            table[attr][str(v).lower() if isinstance(v, bool) else v] = {"generated": gen, "prior": prior}
            worst = max(worst, abs(gen - prior))
    return {"prompt": cfg.prompt, "seeds": len(seeds), "max_abs_diff": worst, "table": table}


@torch.no_grad()
def renders(n: int, seed: int) -> torch.Tensor:
    from segakit.world.dataset import samples

    arr = np.stack([np.asarray(s.image) for s in samples(n, seed)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0


def image_quality(
    pipe, oracle, cfg: QualityConfig, progress: Progress | None = None, images: torch.Tensor | None = None
) -> dict:
    generated = neutral_images(pipe, cfg, cfg.fid_n, images, progress)
    reference = renders(cfg.fid_n, seed=cfg.seed + 31_337)
    held = renders(cfg.fid_n, seed=cfg.seed + 31_338)
    f_ref = oracle.features(reference).numpy()
    f_gen = oracle.features(generated).numpy()
    f_rec = oracle.features(autoencoder_round_trip(pipe.vae, held)).numpy()
    f_held = oracle.features(held).numpy()
    return {
        "n": cfg.fid_n,
        "fd_generated_vs_rendered": frechet_distance(f_gen, f_ref),
        "fd_autoencoder_vs_rendered": frechet_distance(f_rec, f_ref),
        "fd_rendered_vs_rendered": frechet_distance(f_held, f_ref),
    }


def sega_success(pipe, oracle, cfg: QualityConfig, targets: Sequence[Target] = ADDITIONS,
                 progress: Progress | None = None, images: torch.Tensor | None = None,
                 figures: dict | None = None, rewrite: bool = False) -> dict:  # fmt: skip
    """Per target: share of ``sega_seeds`` seeds lacking it whose SEGA edit shows it (``success``), and the share
    of the attributes it did not target that the oracle reads the same as in the plain image (``isolation``).

    With ``rewrite`` the same seeds are drawn from the rewritten prompt instead ("a face of a person, wearing
    glasses"), no SEGA: the baseline an edit is compared with."""
    from dataclasses import replace

    from PIL import Image

    from segakit.core.images import grid

    scan = neutral_seeds(cfg, cfg.sega_scan)
    plain_images = neutral_images(pipe, cfg, cfg.sega_scan, images, progress)
    plain = oracle.predict(plain_images)
    pairs, row_labels = [], []

    def edited(t: Target, seeds: list[int]) -> tuple[list[dict], list[dict]]:
        """The oracle's labels of the plain and the edited images of ``seeds``."""
        if not seeds:
            return [], []
        if rewrite:
            out = sample_images(pipe, t.rewrite(cfg.prompt), seeds, cfg.steps, cfg.guidance, cfg.batch, (), progress,
                                guidance_refresh=cfg.guidance_refresh)  # fmt: skip
        else:
            edit = replace(cfg.edit, prompt=t.prompt)
            out = sample_images(pipe, cfg.prompt, seeds, cfg.steps, cfg.guidance, cfg.batch, [edit], progress,
                                guidance_refresh=cfg.guidance_refresh, momentum=cfg.momentum)  # fmt: skip
        # the figure: a row per target, its first seeds as plain, edited, plain, edited, ... (short rows padded)
        before = to_pil(plain_images[[scan.index(s) for s in seeds[: FIGURE_COLS // 2]]])
        after = to_pil(out[: FIGURE_COLS // 2])
        pairs.extend(im for pair in zip(before, after) for im in pair)
        pairs.extend(Image.new("RGB", before[0].size, "white") for _ in range(FIGURE_COLS - 2 * len(before)))
        row_labels.append(f"'{t.rewrite(cfg.prompt)}'" if rewrite else f"+{t.prompt}")
        return [plain[scan.index(s)] for s in seeds], oracle.predict(out)

    def scored(before: list[dict], after: list[dict], hits: list[bool], ts: Sequence[Target]) -> dict:
        return {"seeds": len(hits), "success": float(np.mean(hits)) if hits else float("nan"),
                "isolation": isolation(before, after, ts)["unchanged"]}  # fmt: skip

    results = {}
    for t in targets:
        before, after = edited(t, [s for s, lab in zip(scan, plain) if not t.present(lab)][: cfg.sega_seeds])
        results[t.name] = scored(before, after, [t.present(x) for x in after], [t])
    # "the other gender": +woman on seeds drawn as men, +man on seeds drawn as women
    first = list(zip(scan, plain))[: cfg.sega_seeds]
    before, after, hits = [], [], []
    for t in GENDER:
        b, a = edited(t, [s for s, lab in first if other_gender(lab) == t])
        before, after, hits = before + b, after + a, hits + [t.present(x) for x in a]
    results["other gender"] = scored(before, after, hits, GENDER)
    if figures is not None and pairs:
        figures["sega-additions.png"] = grid(pairs, cols=FIGURE_COLS, row_labels=row_labels, scale=2)
    return {"edit": asdict(cfg.edit), "targets": results}


def text_side(pipe, clip, cfg: QualityConfig) -> dict:
    """Per attribute: caption separation / man-woman, and (with ``clip``) zero-shot accuracy and AUC on renders."""
    from segakit.eval.text_encoder import caption_separation, zero_shot

    sep = caption_separation(pipe.text_encoder, pipe.tokenizer, cfg.te_captions)
    zs = zero_shot(clip, pipe.tokenizer, cfg.te_images) if clip is not None and cfg.te_images else {}
    ref = sep.get("presentation", float("nan"))
    return {"captions": cfg.te_captions, "images": cfg.te_images if zs else 0,
            "per_attribute": {a: {"separation": v, "separation_ratio": v / ref, **({"zero_shot_accuracy": zs[a]["accuracy"],
                                  "zero_shot_auc": zs[a]["auc"]} if a in zs else {})} for a, v in sep.items()}}  # fmt: skip


def run_all(
    pipe, oracle, cfg: QualityConfig, progress: Progress | None = None, figures: dict | None = None, clip=None
) -> dict:
    """The whole table; with ``figures`` (a dict) also sample grids to look at, by file name; with ``clip`` (the
    model's CLIPModel) also its zero-shot columns."""
    from segakit.core.images import grid

    plain = neutral_images(pipe, cfg, max(cfg.prior_seeds, cfg.fid_n, cfg.sega_scan), None, progress)
    if figures is not None:
        figures["samples-neutral.png"] = grid(to_pil(plain[: 3 * FIGURE_COLS]), cols=FIGURE_COLS, scale=2)
    report = {
        "config": {**asdict(cfg), "edit": asdict(cfg.edit)},
        "text_faithfulness": text_faithfulness(pipe, oracle, cfg, progress, figures),
        "prior_fidelity": prior_fidelity(pipe, oracle, cfg, progress, plain),
        "image_quality": image_quality(pipe, oracle, cfg, progress, plain),
        "sega": sega_success(pipe, oracle, cfg, progress=progress, images=plain, figures=figures),
    }
    report["faithfulness_by_guidance"] = {str(cfg.guidance): report["text_faithfulness"]["per_attribute"]} | {
        str(g): text_faithfulness(pipe, oracle, cfg, progress, guidance=g)["per_attribute"] for g in cfg.guidance_sweep
    }
    if cfg.te_captions:
        report["text_side"] = text_side(pipe, clip, cfg)
    return report


def total_images(cfg: QualityConfig) -> int:
    """Images :func:`run_all` generates (the plain images of the neutral prompt are shared)."""
    return (cfg.n_prompts * cfg.prompt_seeds * (1 + len(cfg.guidance_sweep)) + max(cfg.prior_seeds, cfg.fid_n, cfg.sega_scan)
            + (len(ADDITIONS) + 1) * cfg.sega_seeds)  # fmt: skip


def markdown(report: dict, command: str) -> str:
    tf, pf, iq, sg = (report[k] for k in ("text_faithfulness", "prior_fidelity", "image_quality", "sega"))
    e = sg["edit"]
    lines = [
        "# Embedded model quality", "", f"Produced by `{command}`." + model_words(report.get("model")), "",
        "| measure | value | target |", "|---|---|---|",
        f"| text faithfulness ({tf['prompts']} prompts x {tf['seeds_per_prompt']} seeds, {tf['named_values']} named values) | {tf['present']:.3f} | >= 0.90 |",
        f"| prior fidelity: max abs difference over {pf['seeds']} seeds of '{pf['prompt']}' | {pf['max_abs_diff']:.3f} | <= 0.08 |",
        f"| Frechet distance of oracle features, generated vs rendered (n={iq['n']}) | {iq['fd_generated_vs_rendered']:.3f} | |",
        f"| same, autoencoder reconstructions vs rendered (floor) | {iq['fd_autoencoder_vs_rendered']:.3f} | |",
        f"| same, fresh renders vs rendered (sampling noise) | {iq['fd_rendered_vs_rendered']:.3f} | |",
        "", f"SEGA additions to '{pf['prompt']}' (scale {e['scale']:g}, threshold {e['threshold']:g}, warm-up {e['warmup']}), "
        "on seeds whose plain image lacked the attribute; isolation is the share of the attributes the edit did not "
        "target that the oracle reads the same as in the plain image:", "", "| target | seeds | success | isolation |", "|---|---|---|---|",
    ]  # fmt: skip
    lines += [
        f"| {name} | {r['seeds']} | {r['success']:.3f} | {r['isolation']:.3f} |" for name, r in sg["targets"].items()
    ]
    lines += ["", "Text faithfulness per attribute:", "", "| attribute | share present |", "|---|---|"]
    lines += [f"| {a} | {v:.3f} |" for a, v in tf["per_attribute"].items()]
    lines += per_attribute_lines(report)
    lines += ["", "Prior fidelity (generated / prior):", "", "| attribute | values |", "|---|---|"]
    for attr, vals in pf["table"].items():
        lines.append(
            f"| {attr} | " + ", ".join(f"{v}: {d['generated']:.2f} / {d['prior']:.2f}" for v, d in vals.items()) + " |"
        )
    return "\n".join(lines) + "\n"


def model_words(model: dict | None) -> str:
    """The report's words naming the weights it was measured on (reports written before that field have none)."""
    return f" Model `{model['name']}`, weights fingerprint `{model['fingerprint']}`." if model else ""


def per_attribute_lines(report: dict) -> list[str]:
    """Per attribute, what the text encoder separates, what the CLIP reads, and faithfulness across guidance."""
    sweep = report.get("faithfulness_by_guidance", {})
    side = report.get("text_side", {}).get("per_attribute", {})
    if not sweep and not side:
        return []
    scales = sorted(sweep, key=float)
    attrs = sorted(set(side) | {a for g in scales for a in sweep[g]})
    lines = ["", "Per attribute: caption separation relative to man/woman (text encoder), the CLIP's zero-shot "
             "accuracy / AUC on renders, and text faithfulness at each guidance scale:", "",
             "| attribute | separation / man-woman | zero-shot acc | zero-shot AUC | " + " | ".join(f"faithful @ {g}" for g in scales) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(scales)]  # fmt: skip

    def cell(d: dict, key: str) -> str:
        return f"{d[key]:.3f}" if key in d else "-"

    for a in attrs:
        s = side.get(a, {})
        faithful = [f"{sweep[g][a]:.3f}" if a in sweep[g] else "-" for g in scales]
        lines.append(
            f"| {a} | {cell(s, 'separation_ratio')} | {cell(s, 'zero_shot_accuracy')} | {cell(s, 'zero_shot_auc')} | "
            + " | ".join(faithful)
            + " |"
        )
    return lines


def write_report(report: dict, out: Path, command: str, figures: dict | None = None) -> list[Path]:
    from segakit.core.atomic import atomic_open, ensure_writable_dir
    from segakit.core.images import save_png

    out = ensure_writable_dir(Path(out))
    with atomic_open(out / "report.json", "w") as fh:
        json.dump(report, fh, indent=2)
    text = markdown(report, command)
    if figures:
        text += "\n" + "".join(f"![{name[:-4]}]({name})\n\n" for name in figures)
    with atomic_open(out / "report.md", "w") as fh:
        fh.write(text)
    pngs = [save_png(image, out / name, {"command": command}) for name, image in (figures or {}).items()]
    return [out / "report.json", out / "report.md", *pngs]
