"""Training checkpoints as safetensors plus a small JSON state -- no pickles.

A checkpoint is a folder::

    ckpt/
      model.safetensors     the trained weights
      ema.safetensors       (optional) an exponential moving average of them
      optim.safetensors     the optimizer's tensors (Adam moments, step counters)
      state.json            step, config, the optimizer's param groups, anything else JSON-ready

It is written to ``ckpt.tmp`` and swapped in by renames, so a run killed at any moment leaves either
the previous or the new checkpoint whole (``ckpt.old`` is picked up if the kill fell between the renames).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into flat tensors and JSON-ready rest."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    folder: Path,
    *,
    model: dict[str, torch.Tensor],
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a checkpoint folder atomically (see the module docstring)."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_contiguous(model), tmp / "model.safetensors")
    if ema is not None:
        save_file(_contiguous(ema), tmp / "ema.safetensors")
    state = dict(state)
    if optimizer is not None:
        tensors, meta = optimizer_to_tensors(optimizer)
        save_file(_contiguous(tensors), tmp / "optim.safetensors")
        state["optimizer"] = meta
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint at ``folder`` (or its ``.old`` twin after an unlucky kill), else None."""
    folder = Path(folder)
    for cand in (folder, folder.with_name(folder.name + ".old")):
        if (cand / "state.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    return None


def load_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any] | None:
    """Restore weights (and optimizer / EMA tensors in place) from ``folder``; returns the JSON state or None."""
    found = find_checkpoint(folder)
    if found is None:
        return None
    model.load_state_dict(load_file(found / "model.safetensors"))
    state = json.loads((found / "state.json").read_text())
    if optimizer is not None and (found / "optim.safetensors").is_file():
        optimizer_from_tensors(optimizer, load_file(found / "optim.safetensors"), state["optimizer"])
    if ema is not None and (found / "ema.safetensors").is_file():
        saved = load_file(found / "ema.safetensors")
        for k, v in ema.items():
            v.copy_(saved[k])
    return state


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder ``tmp`` to ``final``, replacing what was there."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_pretrained_dir(folder: Path, info: dict, *parts) -> None:
    """A from_pretrained folder: each of ``parts`` (model, tokenizer, processor) saved into it, plus
    ``training.json`` with ``info``; written whole or not at all."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part in parts:
        part.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(info, indent=1))
    replace_dir(tmp, folder)


def check_export(export: str, overwrite: bool) -> None:
    """The output policy for a recipe's ``--export``: an existing file or folder there is refused before training
    starts unless ``--overwrite true`` (replacing shipped weights is meant to be asked for)."""
    from segakit.core.errors import UserError

    if export and Path(export).exists() and not overwrite:
        raise UserError(
            f"--export {export!r} exists already; pass --overwrite true to replace it, or export elsewhere."
        )


def copy_dir(src: Path, dest: Path) -> Path:
    """Copy folder ``src`` to ``dest`` (e.g. a run's model into the package's assets), replacing it whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    replace_dir(tmp, dest)
    return dest
