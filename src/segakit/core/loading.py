"""Model names to loaded components: "embedded" | hub id | local folder, safetensors only.

A pickle checkpoint (``.bin``, ``.ckpt``, ``.pt``, ``.pth``) can run arbitrary code when loaded, so
segakit refuses it and says so; diffusers is always called with ``use_safetensors=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from segakit.core.assets import asset_path
from segakit.core.errors import UserError, arg

EMBEDDED = "embedded"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")


def pickle_refusal(name: str | Path, what: str = "") -> str:
    """The one sentence that refuses a pickle file."""
    return f"{what + ' ' if what else ''}{str(name)!r} is a pickle checkpoint, which can run code when loaded; convert it to safetensors."


def embedded_path() -> Path:
    """The folder of the model shipped inside segakit (standard diffusers layout)."""
    return asset_path("embedded")


def is_embedded(name: str | Path) -> bool:
    """``name`` is "embedded" or the embedded model's folder (however the path is written)."""
    if str(name) == EMBEDDED:
        return True
    try:
        return Path(name).expanduser().resolve() == embedded_path().resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def model_key(name: str | Path) -> str:
    """One spelling per model, to compare what a file was made with: "embedded", "embedded-flow", an absolute
    folder, or the hub id."""
    from segakit.core.embedded_flow import EMBEDDED_FLOW, is_embedded_flow_folder

    if is_embedded(name):
        return EMBEDDED
    if str(name) == EMBEDDED_FLOW or is_embedded_flow_folder(Path(name)):
        return EMBEDDED_FLOW
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else str(name)


def resolve(name: str | Path) -> str:
    """The path or hub id that diffusers should load for ``name``; checks local folders."""
    name = str(name)
    if name == EMBEDDED:
        path = embedded_path()
        if not (path / "model_index.json").is_file():
            raise UserError(
                "The embedded model is not in this installation yet (src/segakit/assets/embedded is empty); "
                "pass --model with a diffusers folder or hub id, or build it with `make train-embedded`."
            )
        return str(path)
    from segakit.core.embedded_flow import EMBEDDED_FLOW, folder

    if name == EMBEDDED_FLOW:
        return str(folder())
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise UserError(pickle_refusal(name))
        raise UserError(f"{name!r} is a file; pass a diffusers model folder (with model_index.json) or a hub id.")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UserError(
                f"{name!r} is a folder without model_index.json; pass a diffusers model folder or a hub id."
            )
        _refuse_pickles(path)
        return str(path)
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and " " not in name
    if not looks_like_hub_id:
        raise UserError(
            f"Model {name!r} is neither a local folder nor a hub id (owner/name), nor 'embedded' or 'embedded-flow'."
        )
    return name


def vae_folder(name: str | Path) -> Path:
    """An AutoencoderKL folder: ``name`` itself, or the ``vae/`` of a model folder or of "embedded"."""
    path = Path(resolve(name)) if str(name) == EMBEDDED else Path(name).expanduser()
    if (path / "vae" / "config.json").is_file():
        return path / "vae"
    if (path / "config.json").is_file():
        return path
    raise UserError(
        f"{str(name)!r} is neither an autoencoder folder (config.json) nor a model folder with vae/; pass one of those or 'embedded'."
    )


def _refuse_pickles(folder: Path) -> None:
    """A component folder holding only pickled weights is refused before diffusers sees it."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = [f.name for f in sub.iterdir() if f.is_file()]
        pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        if pickles and not any(f.endswith(".safetensors") for f in files):
            raise UserError(
                f"{str(sub)!r} holds only pickle weights ({pickles[0]}), which can run code when loaded; "
                "segakit loads safetensors only."
            )


def absent_components(folder: Path) -> list[str]:
    """Components a folder's ``model_index.json`` lists as saved without weights (``[null, null]``), such as an
    SD3 pipeline saved with ``text_encoder_3=None``: diffusers wants them passed as ``None``; segakit does it."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return []
    return [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and all(x is None for x in v)]


def model_family(name: str | Path) -> str | None:
    """ "unet", "sd3" or "flux" from a model's ``model_index.json`` (a folder's, "embedded"'s, or a hub id's in this
    machine's hub cache), without loading weights; None where that file is not here (the model decides once loaded).
    A model that is neither a folder nor a hub id is refused as :func:`resolve` refuses it."""
    target = Path(resolve(name))
    index_file = target / "model_index.json"
    if not index_file.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(name), "model_index.json")
        if not isinstance(cached, str):
            return None
        index_file = Path(cached)
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        return None
    transformer = index.get("transformer")
    kind = str(transformer[1]) if isinstance(transformer, list) and len(transformer) == 2 else ""
    if kind.startswith("Flux"):
        return "flux"
    if kind.startswith("SD3"):
        return "sd3"
    return "unet" if isinstance(index.get("unet"), list) else None


def load_pipeline(name: str | Path = EMBEDDED, pipeline_class=None, **kwargs):
    """Load ``name`` with diffusers and convert it to ``pipeline_class`` (with ``from_pipe``) if given.

    The methods call this with their own class (``SegaPipeline.from_pretrained`` passes itself); without one,
    the pipeline diffusers chose is returned as it is.
    """
    from diffusers import DiffusionPipeline

    if kwargs.get("use_safetensors") is False:
        raise UserError("use_safetensors=False is not allowed: segakit loads weights from safetensors only.")
    kwargs["use_safetensors"] = True
    target = resolve(name)
    if str(name) == EMBEDDED or Path(target).is_dir():
        kwargs.setdefault("local_files_only", True)
        for component in absent_components(Path(target)):
            kwargs.setdefault(component, None)
    try:
        with quiet_loading():
            loaded = DiffusionPipeline.from_pretrained(target, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(load_failure(name, target, exc)) from None
    if pipeline_class is not None and not isinstance(loaded, pipeline_class):
        with quiet_loading():
            loaded = pipeline_class.from_pipe(loaded)
    loaded.set_progress_bar_config(disable=True)  # quiet library: pipe.set_progress_bar_config(disable=False) shows it
    return loaded


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Loading says nothing unasked: no loading bars, no notices from diffusers and transformers (a missing
    torchvision, casting a model with ``to()``), unless the user turned their logging up (``set_verbosity_info``)
    or set SEGAKIT_VERBOSE."""
    import warnings

    from diffusers.utils import logging as d_log
    from transformers.utils import logging as t_log

    if os.environ.get("SEGAKIT_VERBOSE"):
        yield
        return
    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (d_log, t_log)]
    for module, level, _ in saved:
        if level >= module.WARNING:  # the user's own louder setting (info, debug) is kept
            module.set_verbosity_error()
        module.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torchvision.*")
            warnings.filterwarnings("ignore", message=".*should be kept in float32.*")
            yield
    finally:
        for module, level, bar in saved:
            module.set_verbosity(level)
            if bar:
                module.enable_progress_bar()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_failure(name: str | Path, target: str, exc: BaseException) -> str:
    """The sentence for a model diffusers could not load: a hub id that is not on this machine says so and what to
    pass instead; otherwise the library's first line, without its pointers to a stack trace nobody is shown."""
    text = str(exc).strip()
    first = re.sub(
        r"\s*Please check out the root cause in the stacktrace above\.?", "", text.splitlines()[0] if text else ""
    )
    first = first.strip() or type(exc).__name__
    if Path(target).is_dir():
        return f"Could not load model {str(name)!r}: {first}"
    if _offline():
        return (f"Model {str(name)!r} is a hub id, and it is not in this machine's hub cache while HF_HUB_OFFLINE=1 keeps "
                f"segakit off the hub; pass {arg('model')} FOLDER with a diffusers model folder (or 'embedded'), or "
                f"download it once with internet (HF_HUB_OFFLINE unset).")  # fmt: skip
    return (f"Model {str(name)!r} could not be loaded from the hub ({first}); check the id and the connection, or pass "
            f"{arg('model')} FOLDER with a diffusers model folder (or 'embedded'); with HF_HUB_OFFLINE=1 only the local cache is used.")  # fmt: skip


def weights_file(path: str | Path, what: str) -> str:
    """A local ``.safetensors`` file of ``what`` (a LoRA, an embedding, a checkpoint), checked before diffusers reads it."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UserError(pickle_refusal(path, what))
    if suffix != ".safetensors":
        raise UserError(
            f"{what} {str(path)!r} is not a .safetensors file; segakit loads weights from safetensors only."
        )
    if not p.is_file():
        raise UserError(f"{what} {str(path)!r} does not exist; pass the path of a .safetensors file.")
    try:  # the header only: cheap, and a broken file is named before any model is loaded
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            f.keys()
    except Exception as exc:  # safetensors raises its own error type, or OSError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} {str(path)!r} is not a readable .safetensors file ({reason}).") from None
    return str(p)


def looks_like_file(value) -> bool:
    """A str/Path naming a weights file (rather than a folder, a hub id or a state dict)."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    p = Path(value).expanduser()
    return p.is_file() or p.suffix.lower() in (*PICKLE_SUFFIXES, ".safetensors")


def single_file_checkpoint(path: str | Path, config: str | Path | None) -> tuple[str, str | None]:
    """A ``.safetensors`` checkpoint and its config (a local diffusers folder or a hub id), checked for ``from_single_file``."""
    checkpoint = weights_file(path, "Checkpoint")
    if config is None:
        return checkpoint, None
    folder = Path(config).expanduser()
    if folder.exists():
        if not (folder / "model_index.json").is_file():
            raise UserError(
                f"config {str(config)!r} is not a diffusers model folder (no model_index.json); pass one, or a hub id."
            )
        return checkpoint, str(folder)
    return checkpoint, resolve(str(config))
