"""``segakit world ...``: the faces world from the command line.

segakit world schema --json
segakit world sample --n 1000 --seed 0 --out data/faces [--set role=doctor]
segakit world pairs --n 1000 --seed 0 --out data/pairs [--attribute glasses --attribute hat]
segakit world classify data/faces --json --against data/faces/labels.jsonl [--per-image preds.jsonl]
segakit world oracle-eval --n 2000 --seed 777001
segakit world sheet --out docs/img
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from segakit.cli.options import Quiet
from segakit.core.errors import UserError

world_app = typer.Typer(
    help="The faces world: procedural portraits with exact labels, captions, edit pairs and an attribute oracle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


@contextmanager
def progress(description: str, total: int) -> Iterator:
    from segakit.cli.options import progress_shown

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not (err.is_terminal and progress_shown()),
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def _key(v) -> str:
    return "true" if v is True else "false" if v is False else str(v)


@world_app.command()
def schema(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (schema, priors, caption synonyms)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the priors as Markdown tables."),
) -> None:
    """Print the attribute schema, the priors and the caption synonyms."""
    from segakit.world.captions import SYNONYMS
    from segakit.world.schema import ATTRIBUTES, PRIORS, schema_dict

    d = schema_dict() | {"synonyms": SYNONYMS}
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    if markdown:
        typer.echo(priors_markdown())
        return
    table = Table(title="faces world: attributes and priors (marginal)")
    table.add_column("attribute")
    table.add_column("values (prior)")
    for a, vals in ATTRIBUTES.items():
        table.add_row(a, ", ".join(f"{_key(v)} ({PRIORS[a][v]:.2f})" for v in vals))
    Console().print(table)


def priors_markdown() -> str:
    """The marginal priors and the priors conditional on presentation, as Markdown tables."""
    from segakit.world.schema import (
        ATTRIBUTES,
        BANGS_IF_HAIR,
        CONDITIONAL_PRIORS,
        PRIORS,
    )

    lines = ["| attribute | values (marginal prior) |", "|---|---|"]
    for a, vals in ATTRIBUTES.items():
        lines.append(f"| {a} | " + ", ".join(f"{_key(v)} {PRIORS[a][v]:.3f}" for v in vals) + " |")
    lines += ["", "| attribute given presentation | man | woman |", "|---|---|---|"]
    for a, cond in CONDITIONAL_PRIORS.items():
        for v in ATTRIBUTES[a]:
            lines.append(f"| {a} = {_key(v)} | {cond['man'][v]:.2f} | {cond['woman'][v]:.2f} |")
    role = CONDITIONAL_PRIORS["role"]
    lines += ["", "| role | share of men among them |", "|---|---|"]
    for r in ATTRIBUTES["role"]:
        lines.append(f"| {r} | {role['man'][r] / (role['man'][r] + role['woman'][r]):.2f} |")
    lines += ["", f"bangs: P(bangs | hair_style != bald) = {BANGS_IF_HAIR}, never with a bald head."]
    return "\n".join(lines)


@world_app.command()
def sample(
    n: int = typer.Option(..., "-n", "--n", help="Number of portraits (at least 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed; portrait i depends only on (seed, i)."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder (created if needed; numbering continues after the portraits already there, labels.jsonl gets them appended).",
    ),
    start: int | None = typer.Option(
        None,
        "--start",
        help="Index of the first portrait (default: after the highest already in --out; 0 in a new folder).",
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Pin attributes, e.g. --set role=doctor --set glasses=true."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="With --start: replace the portraits of that range already there."
    ),
    quiet: Quiet = False,
) -> None:
    """Write N portraits as PNGs plus labels.jsonl (file, caption, every attribute)."""
    from segakit.core.outputs import plan_series
    from segakit.world.dataset import SAMPLE_PATTERN, check_count, write_samples
    from segakit.world.schema import parse_assignments

    check_count(n, seed, start or 0)
    fixed = parse_assignments(set_)
    start = plan_series(out, SAMPLE_PATTERN, start, n, overwrite)
    check_count(n, seed, start)
    with progress("rendering", n) as update:
        path = write_samples(out, n, seed, start, fixed, on_item=update)
    err.print(f"wrote {n} portraits and {path}")


@world_app.command()
def pairs(
    n: int = typer.Option(..., "-n", "--n", help="Number of edit pairs (at least 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed; pair i depends only on (seed, i)."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Output folder (created if needed; numbering continues after the pairs already there, pairs.jsonl gets them appended).",
    ),
    start: int | None = typer.Option(
        None,
        "--start",
        help="Index of the first pair (default: after the highest already in --out; 0 in a new folder).",
    ),
    attribute: list[str] | None = typer.Option(None, "--attribute", help="Only change these attributes (repeatable)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="With --start: replace the pairs of that range already there."
    ),
    quiet: Quiet = False,
) -> None:
    """Write N edit pairs (source/target PNGs) plus pairs.jsonl (instruction, captions, changes)."""
    from segakit.core.outputs import plan_series
    from segakit.world.dataset import check_count
    from segakit.world.pairs import PAIRS_PATTERN, check_attributes, write_pairs

    check_count(n, seed, start or 0)
    attrs = [a.strip() for item in (attribute or []) for a in item.split(",") if a.strip()]
    attrs = check_attributes(attrs)
    start = plan_series(out, PAIRS_PATTERN, start, n, overwrite)
    check_count(n, seed, start)
    with progress("rendering pairs", n) as update:
        path = write_pairs(out, n, seed, start, attrs, on_item=update)
    err.print(f"wrote {n} pairs and {path}")


def _read_labels(path: Path) -> dict[str, dict]:
    from segakit.world.schema import ATTRIBUTES

    if not path.is_file():
        raise UserError(
            f"Labels file {str(path)!r} does not exist; pass the labels.jsonl written by `segakit world sample`."
        )
    out = {}
    with open(path, encoding="utf-8") as fh:
        for k, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[Path(rec["file"]).name] = {a: rec[a] for a in ATTRIBUTES}
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UserError(
                    f"Line {k} of {str(path)!r} is not a label record with 'file' and every attribute ({exc})."
                ) from None
    return out


@world_app.command()
def classify(
    folder: Path = typer.Argument(
        ..., metavar="PATH", help="A PNG image, or a folder of them (64x64 faces; others are resized, with a warning)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    against: Path | None = typer.Option(None, "--against", help="labels.jsonl to score the predictions against."),
    per_image: Path | None = typer.Option(
        None, "--per-image", help="Write one JSON line per image (predictions, probabilities)."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Oracle weights (.safetensors); default: shipped."),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per forward pass."),
    quiet: Quiet = False,
) -> None:
    """Label a PNG, or every PNG in a folder, with the oracle; print attribute frequencies (and accuracy with --against)."""
    from PIL import Image

    from segakit.core.atomic import atomic_open, ensure_writable_dir
    from segakit.world.oracle import Oracle, accuracy, decode
    from segakit.world.schema import ATTRIBUTES

    if folder.is_file():
        if folder.suffix.lower() != ".png":
            raise UserError(f"{str(folder)!r} is not a .png image; give a PNG image or a folder of them.")
        files = [folder]
    elif not folder.is_dir():
        raise UserError(f"{str(folder)!r} does not exist; give a PNG image or a folder of them.")
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise UserError(f"Folder {str(folder)!r} holds no .png images.")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}.")
    truth = _read_labels(against) if against is not None else None
    if truth is not None and not any(f.name in truth for f in files):
        raise UserError(f"None of the {len(files)} images in {str(folder)!r} is listed in {str(against)!r}.")
    if per_image is not None:
        ensure_writable_dir(per_image.parent if str(per_image.parent) else Path("."))
    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    oracle = Oracle.load(weights)
    counts = {a: Counter() for a in ATTRIBUTES}
    n_hair = 0
    scored_pred, scored_truth = [], []
    odd: list[tuple[Path, tuple[int, int]]] = []  # images that are not 64x64
    with contextlib.ExitStack() as stack:  # on any error the --per-image file is not left behind
        per_fh = stack.enter_context(atomic_open(per_image, "wb")) if per_image is not None else None
        with progress("classifying", len(files)) as update:
            for i in range(0, len(files), batch_size):
                chunk = files[i : i + batch_size]
                images = []
                for f in chunk:
                    try:
                        with Image.open(f) as im:
                            images.append(im.convert("RGB"))
                            if im.size != (64, 64):
                                odd.append((f, im.size))
                    except OSError:
                        raise UserError(f"{str(f)!r} is not a readable PNG image.") from None
                probs = oracle.probabilities(images)
                preds = decode(probs)
                for j, (f, p) in enumerate(zip(chunk, preds)):
                    for a in ATTRIBUTES:
                        if a == "hair_color" and p["hair_style"] == "bald":
                            continue
                        counts[a][p[a]] += 1
                    n_hair += p["hair_style"] != "bald"
                    if truth is not None and f.name in truth:
                        scored_pred.append(p)
                        scored_truth.append(truth[f.name])
                    if per_fh is not None:
                        rec = {
                            "file": f.name,
                            **p,
                            "probabilities": {a: [round(float(x), 5) for x in probs[a][j]] for a in ATTRIBUTES},
                        }
                        per_fh.write((json.dumps(rec) + "\n").encode())
                update(min(i + batch_size, len(files)))

    if odd:
        (first, (w, h)) = odd[0]
        err.print(f"warning: {len(odd)} of {len(files)} images are not 64x64 (e.g. {first.name}, {w}x{h}); the oracle reads the "
                  "faces world's 64x64 portraits, so its labels for other images mean little.", highlight=False, soft_wrap=True)  # fmt: skip
    n = len(files)
    result: dict = {"n": n, "frequencies": {}}
    for a, vals in ATTRIBUTES.items():
        denom = n_hair if a == "hair_color" else n
        result["frequencies"][a] = {_key(v): (counts[a][v] / denom if denom else 0.0) for v in vals}
    if truth is not None:
        result["n_scored"] = len(scored_pred)
        result["accuracy"] = accuracy(scored_pred, scored_truth)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"oracle on {n} images" + (f" ({len(scored_pred)} scored)" if truth is not None else ""))
    table.add_column("attribute")
    table.add_column("predicted shares")
    if truth is not None:
        table.add_column("accuracy", justify="right")
    for a in ATTRIBUTES:
        row = [a, ", ".join(f"{k} {v:.2f}" for k, v in result["frequencies"][a].items())]
        if truth is not None:
            row.append(f"{result['accuracy'][a] * 100:.1f}%")
        table.add_row(*row)
    Console().print(table)


def accuracy_markdown(res: dict[str, dict[str, float]]) -> str:
    from segakit.world.schema import ATTRIBUTES

    cols = list(res)
    lines = ["| attribute | target (clean / augmented) | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for a in res[cols[0]]:
        target = ("99%" if len(ATTRIBUTES[a]) == 2 else "97%") + " / 95%"
        lines.append(f"| {a} | {target} | " + " | ".join(f"{res[c][a] * 100:.2f}%" for c in cols) + " |")
    return "\n".join(lines)


@world_app.command("oracle-eval")
def oracle_eval(
    n: int = typer.Option(2000, "-n", "--n", help="Number of fresh renders."),
    seed: int = typer.Option(777_001, "--seed", help="Seed of the held-out renders (training used seed 1)."),
    weights: Path | None = typer.Option(None, "--weights", help="Oracle weights (.safetensors); default: shipped."),
    augmented: bool = typer.Option(
        True, "--augmented/--clean-only", help="Also score after the training augmentation."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a Markdown table."),
    autoencoder: str | None = typer.Option(
        None,
        "--autoencoder",
        help="Also score the renders after this autoencoder's round trip: 'embedded' or a diffusers AutoencoderKL folder.",
    ),
    quiet: Quiet = False,
) -> None:
    """Held-out accuracy of the oracle per attribute (clean renders, after augmentation, after an autoencoder)."""
    import torch

    from segakit.world.dataset import check_count
    from segakit.world.oracle import Oracle, held_out_accuracy

    check_count(n, seed)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    oracle = Oracle.load(weights)
    roundtrip = None
    if autoencoder is not None:
        from segakit.core.loading import vae_folder
        from segakit.train.oracle import autoencoder_roundtrip

        roundtrip = autoencoder_roundtrip(str(vae_folder(autoencoder)), "cpu")
    with progress("rendering", n) as update:
        res = held_out_accuracy(oracle, n=n, seed=seed, augmented=augmented, on_item=update, autoencoder=roundtrip)
    if as_json:
        typer.echo(json.dumps({"n": n, "seed": seed, **res}, indent=2))
    else:
        typer.echo(
            f"oracle held-out accuracy: n={n} fresh renders, seed {seed} (hair_color scored where hair_style != bald)\n"
        )
        typer.echo(accuracy_markdown(res))


@world_app.command()
def sheet(
    out: Path = typer.Option(
        Path("out/world-sheet"),
        "--out",
        help="Folder for the PNG figures (the documentation's: docs/img, with --overwrite).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the portraits shown."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the figures already in --out."),
) -> None:
    """Draw the documentation figures: contact sheet, attribute rows, edit pairs, augmentation."""
    from segakit.core.atomic import ensure_writable_dir
    from segakit.core.outputs import plan_folder
    from segakit.world.figures import FIGURES, all_figures

    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}.")
    plan_folder(out, "--out", FIGURES, overwrite)
    ensure_writable_dir(out)
    for p in all_figures(out, seed):
        err.print(f"wrote {p}")


@world_app.command()
def captions(
    n: int = typer.Option(10_000, "-n", "--n", help="Number of captions to draw."),
    seed: int = typer.Option(0, "--seed", help="Seed (the same captions as `sample --seed`)."),
    examples: int = typer.Option(12, "--examples", help="How many example captions to print."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (statistics, vocabulary, examples)."),
) -> None:
    """Caption statistics: shares of empty / concept-only / full captions, vocabulary, examples."""
    import re

    from segakit.world.captions import caption
    from segakit.world.dataset import check_count, rng_for
    from segakit.world.schema import sample_face

    check_count(n, seed)
    caps = []
    for i in range(n):
        rng = rng_for(seed, i)
        caps.append(caption(sample_face(rng), rng))
    vocab = sorted({w for c in caps for w in re.findall(r"[a-z'-]+", c)})
    stats = {
        "n": n,
        "empty": sum(c == "" for c in caps) / n,
        "short_3_words_or_less": sum(0 < len(c.split()) <= 3 for c in caps) / n,
        "longer": sum(len(c.split()) > 3 for c in caps) / n,
        "distinct": len(set(caps)) / n,
        "mean_words": sum(len(c.split()) for c in caps) / n,
        "vocabulary_size": len(vocab),
    }
    if as_json:
        typer.echo(json.dumps({**stats, "vocabulary": vocab, "examples": caps[:examples]}, indent=2))
        return
    typer.echo(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    for c in caps[:examples]:
        typer.echo(f"  {c!r}")
