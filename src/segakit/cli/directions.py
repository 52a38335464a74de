"""``segakit directions ...``: learn a self-discovered h-space direction, and show one.

segakit directions learn woman --positive "a face of a woman" --neutral "a face of a person" --out woman.safetensors
segakit directions learn no-horror --positive "a face of a person" --negative "a zombie" --out safe.safetensors
segakit directions learn woman --positive "a face of a woman" --out woman.safetensors --workers 2   # images in 2 processes
segakit directions show woman.safetensors [--json]
segakit directions list [--library DIR] [--json]                       # the shipped library's directions
segakit generate "a doctor" --direction woman.safetensors:1.0
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from segakit.cli.options import DEVICE_HELP, MODEL_HELP, Quiet, device_and_dtype, progress_bar
from segakit.cli.runners import RAY_HELP, WORKERS_HELP, check, executor, wants_workers
from segakit.core.errors import UserError

directions_app = typer.Typer(
    help="Self-discovered h-space concept directions: learn, show, list.", no_args_is_help=True
)


@directions_app.command("learn")
def learn(
    name: Annotated[str, typer.Argument(help="The concept's name, e.g. woman or glasses.")],
    positive: Annotated[str, typer.Option("--positive", help="A prompt that shows the concept.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The direction file to write (.safetensors).")],
    neutral: Annotated[str, typer.Option("--neutral", help="The prompt without the concept.")] = "a face of a person",
    negative: Annotated[
        str | None, typer.Option("--negative", help="The concept as a negative prompt (anti-concept).")
    ] = None,
    images: Annotated[int, typer.Option("--images", "-n", "--n", help="Images generated for learning.")] = 200,
    steps: Annotated[int, typer.Option("--steps", help="Optimisation steps.")] = 500,
    batch: Annotated[int, typer.Option("--batch", help="Latents per optimisation step.")] = 8,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first image; image i uses seed + i.")] = 0,
    gen_steps: Annotated[int, typer.Option("--gen-steps", help="Denoising steps of the generated images.")] = 25,
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "embedded",
    cache: Annotated[Path, typer.Option("--cache", help="Folder for the generated latents (a rerun resumes).")] = Path(
        "out/directions-cache"
    ),
    device: Annotated[str | None, typer.Option(help=DEVICE_HELP)] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help=WORKERS_HELP + " Learning itself runs here.")
    ] = None,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file instead of refusing.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Learn a direction from the model's own images (Li et al., CVPR 2024) and save it."""
    from segakit.core.outputs import plan_file
    from segakit.directions import LearnConfig, learn_direction
    from segakit.sega.pipeline import SegaPipeline

    if out.is_dir():
        raise UserError(
            f"--out {str(out)!r} is a folder; name the direction file, e.g. {str(out / (name + '.safetensors'))!r}."
        )
    plan_file(out, ".safetensors", "--out", overwrite)  # never replaces a learned direction unasked
    cfg = LearnConfig(name=name, positive=positive, neutral=neutral, negative=negative, images=images, steps=steps,
                      batch=batch, lr=lr, seed=seed, gen_steps=gen_steps).check()  # fmt: skip
    check(workers, ray)
    dev, dtype = device_and_dtype(device, "fp32")
    pipe = SegaPipeline.from_pretrained(model, dtype=dtype).to(dev)
    with _shard_maker(workers, ray, model, dev, cfg) as make_shards, progress_bar(transient=False) as bar:
        tasks = {"images": bar.add_task("generating", total=images), "steps": bar.add_task("learning", total=steps)}
        direction = learn_direction(pipe, cfg, cache, progress=lambda phase, k, n: bar.update(tasks[phase], completed=k),
                                    make_shards=make_shards)  # fmt: skip
    direction.meta["model"] = model
    direction.save(out)
    m = direction.meta
    typer.echo(f"{out}  ({name}: loss {m['first_loss']:.4f} -> {m['final_loss']:.4f}, "
               f"{m['seconds_generating']:.0f} s generating, {m['seconds_learning']:.0f} s learning)")  # fmt: skip


@contextlib.contextmanager
def _shard_maker(workers: int | None, ray: str | None, model: str, device: str, cfg) -> Iterator:
    """The learner's image shards made by the batch runner's workers (one torch thread each), or None: this process."""
    if not wants_workers(workers, ray):
        yield None
        return
    from segakit.directions.learn import shards_on
    from segakit.jobs.calls import CallRunner
    from segakit.jobs.worker import WorkerConfig

    with executor(workers, ray, WorkerConfig(device, "fp32", False, 1)) as ex:
        yield shards_on(CallRunner(ex, model).imap, cfg)


@directions_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A direction file (.safetensors).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print a direction's name, shape, norm and how it was learned."""
    from segakit.directions import Direction

    d = Direction.load(file)
    info = {"name": d.name, "shape": list(d.shape), "norm": round(float(d.vector.norm()), 4), **d.meta}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        typer.echo(f"{key:>20}: {value}")


@directions_app.command("list")
def list_directions(
    library: Annotated[
        Path | None, typer.Option("--library", help="A direction library folder (default: the --model's shipped one).")
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Whose shipped library to list: embedded or embedded-flow.")
    ] = "embedded",
    as_json: Annotated[bool, typer.Option("--json", help="Print the names, strengths and files as JSON.")] = False,
) -> None:
    """List a direction library's directions (NAME for --direction in the API, FILE for --direction here), with
    the strength each is used at and the attributes --fair can balance."""
    from segakit.directions.library import Library, library_folder

    lib = Library.load(library_folder(library, model, "segakit directions list needs"))
    rows = [{"name": n, "strength": lib.strength_of(n), "file": str(lib.folder / lib.files[n])} for n in lib.names()]
    if as_json:
        typer.echo(
            json.dumps({"library": str(lib.folder), "directions": rows, "fair": lib.fair_attributes()}, indent=2)
        )
        return
    typer.echo(f"{len(rows)} directions in {lib.folder}:")
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        typer.echo(f"  {r['name']:<{width}}  strength {r['strength']:g}  {r['file']}")
    typer.echo(f"--fair can balance: {', '.join(lib.fair_attributes()) or 'nothing'}")
