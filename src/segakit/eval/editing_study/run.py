"""Running the editing study: every (method, turn) edit is a unit of work cached under ``DIR/cache/`` in a file
named by a hash of everything it depends on (model, caption writer and oracle weights, the method's settings, the
turn's instruction, captions and input pixels), written atomically; a rerun computes only what is missing. The
missing edits are computed first, as chains through the batch runner (:mod:`segakit.eval.editing_study.chains`:
this process, ``--workers N`` or ``--ray``), then every edit is measured from the cache.

A session's turn k+1 edits the method's own result of turn k (MagicBrush's multi-turn protocol), so its key holds
that result's pixels: change turn 1 and the later turns are recomputed. Measures are taken from the cached 8-bit
results, so a resumed run reports exactly what an uninterrupted one does (wall times: the seconds each edit took
when it was computed, stored beside it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from segakit.core.fingerprint import fingerprint, pipeline_fingerprint
from segakit.editing.caption_writer import SELECTION_RULES
from segakit.editing.image import decode, encode, fit
from segakit.eval.editing_study.chains import Chain, edit_arrays, edit_chain
from segakit.eval.editing_study.config import CAPTIONED, DDPM, GOLD, METHODS, WRITTEN, EditingStudyConfig
from segakit.eval.editing_study.flow_methods import flow_key, flow_params
from segakit.eval.editing_study.items import (
    Turn,
    image_of,
    pair_turn,
    session_turns,
    sessions,
    single_change_pairs,
)
from segakit.eval.editing_study.methods import Methods, to_u8
from segakit.eval.editing_study.metrics import (
    ClipScorer,
    attribute_scores,
    l1,
    l2,
    ssim_to,
    to_float,
)
from segakit.eval.sega_study.run import Cache, Unit
from segakit.jobs.calls import CallRunner
from segakit.jobs.local import InProcess
from segakit.jobs.worker import WorkerConfig
from segakit.world.schema import ATTRIBUTES

NO_EDIT = "source (no edit)"  # a reference row: the turn's input handed back unchanged
TARGET = "target (gold render)"  # a reference row: the world's own render of the edit (what a perfect edit scores)
ROUND_TRIP = (
    "source, autoencoder round trip"  # a reference row: what an editor in the model's latent space keeps at best
)
SETTINGS = (
    "steps",
    "edit_seed",
    "guidance",
    "xa_guidance",
    "captions",
    "sega_scale",
    "sega_threshold",
    "skip",
    "source_guidance",
    "mask_tokens",
)


def pixels_hash(u8: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(u8).tobytes()).hexdigest()[:16]


class EditingStudy:
    """Edits every turn with every method (cached), then measures each result."""

    def __init__(self, methods: Methods, oracle, clip: ClipScorer | None, cfg: EditingStudyConfig, cache_dir: Path,
                 progress: Callable[[str], None] | None = None, runner: CallRunner | None = None, model_name: str = "",
                 caption_writer: Path | None = None) -> None:  # fmt: skip
        """Edits are made through ``runner`` (a :class:`segakit.jobs.calls.CallRunner` on local workers or Ray actors
        loading ``model_name``, with the caption writer folder ``caption_writer`` when one was given), or by default
        in this process on ``methods``' own pipeline."""
        self.methods, self.oracle, self.clip, self.cfg = methods, oracle, clip, cfg.check(methods.family)
        self.runner, self.model_name, self.caption_writer = (
            runner,
            model_name or methods.pipe.model_name,
            caption_writer,
        )
        self.cache = Cache(cache_dir)
        self.progress = progress or (lambda name: None)
        writer = methods.pipe.caption_writer
        self.fingerprints = {
            "model": pipeline_fingerprint(methods.pipe.pipe if methods.flow else methods.pipe),
            "oracle": fingerprint(oracle.net),
            "clip": fingerprint(clip.model) if clip is not None else None,
            "caption_writer": fingerprint(writer.model) if writer is not None and hasattr(writer, "model") else None,
        }
        captioner = methods.pipe.captioner
        self.captioner_id = (
            fingerprint(captioner.model) if captioner is not None and hasattr(captioner, "model") else None
        )
        self.writer_temperature = getattr(writer, "temperature", None)
        self.fingerprints["caption_writer_temperature"] = self.writer_temperature
        if any(m in CAPTIONED for m in cfg.methods):
            self.fingerprints["captioner"] = self.captioner_id
        self.settings = {k: getattr(cfg, k) for k in SETTINGS}
        self.settings["steps"] = cfg.steps_for("onthefly")  # every U-Net method's (25 unless --steps says)
        self.units = self.computed = 0

    # ---- the edits, cached
    def _unit(self, method: str, turn: Turn, input_u8: np.ndarray) -> Unit:
        spec = self._flow_spec(method, turn, input_u8) if self.methods.flow else self._unet_spec(method, turn, input_u8)
        if method in WRITTEN:  # the writer's rules, by version (edits cached under version 1 had no key)
            spec["writer_rules"] = SELECTION_RULES
            if self.writer_temperature not in (None, 1.0):  # absent at 1: edits cached before it was kept stay valid
                spec["writer_sampling"] = {"temperature": self.writer_temperature, "retries_rise_to": 1.0}
        return Unit(
            f"{method}-{turn.item}-t{turn.step}", 1, spec, lambda: edit_arrays(self.methods, method, turn, input_u8)
        )

    def _unet_spec(self, method: str, turn: Turn, input_u8: np.ndarray) -> dict:
        spec = {"kind": "edit", "method": method, "model": self.fingerprints["model"], **self.settings,
                "caption_writer": self.fingerprints["caption_writer"] if method in WRITTEN else None,
                "instruction": turn.instruction, "source_caption": turn.source_caption,
                "target_caption": turn.target_caption if method in GOLD else None, "input": pixels_hash(input_u8)}  # fmt: skip
        if method in DDPM:  # only these depend on it (the cache of the others stays valid)
            spec["ddpm_guidance"] = self.cfg.ddpm_guidance
            if self.cfg.ddpm_mask:  # absent when off, so edits cached before the option existed stay valid
                spec["ddpm_mask"] = self.cfg.ddpm_mask
        if method in ("sega", "ledits-diffusers") and self.cfg.sega_mask != "intersect":  # absent at the default
            spec["sega_mask"] = self.cfg.sega_mask
        if self.cfg.blends(method):  # absent when off: the cached edits stay valid
            spec["blend"] = "union"
            if self.cfg.blend_dilate:  # absent at 0, likewise
                spec["blend_dilate"] = self.cfg.blend_dilate
        if method in CAPTIONED:  # captions the image itself: the captioner's weights, not the world's caption
            spec["captioner"], spec["source_caption"] = self.captioner_id, None
        return spec

    def _flow_spec(self, method: str, turn: Turn, input_u8: np.ndarray) -> dict:
        """A flow method's key: the model, the edit it makes with every default resolved (flow_methods.flow_params),
        the turn's inputs, and the caption writer's weights for the -lm methods."""
        target = turn.target_caption if method in GOLD else None
        params = flow_params(self.methods.pipe, method, self.cfg, turn.instruction, turn.source_caption, target,
                             int(input_u8.shape[-1]))  # fmt: skip
        return {"kind": "edit", "method": method, "model": self.fingerprints["model"], "family": self.methods.family,
                "edit": flow_key(params), "caption_writer": self.fingerprints["caption_writer"] if method in WRITTEN else None,
                "instruction": turn.instruction, "source_caption": turn.source_caption, "target_caption": target,
                "input": pixels_hash(input_u8)}  # fmt: skip

    def _missing(self, method: str, turns: list[Turn], input_u8: np.ndarray) -> Chain | None:
        """The chain of ``turns`` (edited in order from ``input_u8``) from its first edit not in the cache on, or None."""
        current = input_u8
        for k, turn in enumerate(turns):
            data = self.cache.load(self._unit(method, turn, current))
            if data is None:
                return Chain(method, tuple(turns[k:]), current)
            current = data["image"]
        return None

    def _compute(self, chains: list[Chain]) -> None:
        """Every edit of ``chains`` through the runner, each saved to the cache as its chain comes back."""
        runner = self.runner or CallRunner(
            InProcess(WorkerConfig(threads=0), pipe=self.methods.pipe, model=self.model_name), self.model_name
        )
        writer = str(self.caption_writer) if self.caption_writer else None
        for returned in runner.imap(edit_chain, [(self.model_name, writer, self.cfg, c) for c in chains]):
            chain, current = chains[returned.index], chains[returned.index].input_u8
            for turn, data in zip(chain.turns, returned.value):
                self.cache.save(self._unit(chain.method, turn, current), data)
                self.computed += 1
                self.progress(f"{chain.method}-{turn.item}-t{turn.step}")
                current = data["image"]

    def _edit(self, method: str, turn: Turn, input_u8: np.ndarray) -> dict[str, np.ndarray]:
        unit = self._unit(method, turn, input_u8)
        self.units += 1
        data = self.cache.load(unit)
        if data is None:  # computed by _compute a moment ago unless the cache folder lost it since
            data = unit.compute()
            self.cache.save(unit, data)
        return data

    def _round_trip(self, turn: Turn) -> np.ndarray:
        """The turn's input encoded and decoded by the model's autoencoder: an edit-friendly inversion with nothing
        to edit gives exactly this back, so no latent editor keeps more of the image."""
        pipe = self.methods.pipe
        if self.methods.flow:  # at the side the flow methods edit at (the image's own)
            editor = pipe.editor
            return to_u8(editor.images(editor.encode(turn.input_image, turn.input_image.width))[0])
        with torch.no_grad():
            return to_u8(decode(pipe.vae, encode(pipe.vae, fit(turn.input_image, pipe.resolution)))[0])

    # ---- measures
    def _measure(self, turn: Turn, result_u8: np.ndarray) -> dict[str, float]:
        res, tgt, src = (to_float(u[None]) for u in (result_u8, to_u8(turn.target_image), to_u8(turn.source_image)))
        src_labels, out_labels = self.oracle.predict([turn.source_image, image_of(result_u8)])
        unchanged = [a for a in ATTRIBUTES if a not in turn.changed_so_far]
        row = {"l1": float(l1(res, tgt)[0]), "l2": float(l2(res, tgt)[0]), "ssim_source": float(ssim_to(res, src)[0])}
        if self.clip is not None:
            row["clip_i"] = float(self.clip.clip_i(res, tgt)[0])
            row["clip_t"] = float(self.clip.clip_t(res, [turn.target_caption])[0])
        row.update(attribute_scores(src_labels, out_labels, turn.changes, unchanged, turn.instructed))
        row["all_so_far"] = float(all(out_labels[a] == v for a, v in turn.changed_so_far.items()))
        row["read"] = {a: _plain(out_labels[a]) for a in turn.changed_so_far}
        row["others_changed"] = [a for a in unchanged if out_labels[a] != src_labels[a]]
        return row

    def _record(self, method: str, turn: Turn, data: dict | None, result_u8: np.ndarray) -> dict:
        rec = {"method": method, "item": turn.item, "turn": turn.step, "instruction": turn.instruction,
               "changes": {a: _plain(v) for a, v in turn.changes.items()}, **self._measure(turn, result_u8)}  # fmt: skip
        if data is not None:
            rec["seconds"] = round(float(data["seconds"]), 3)
            for key in ("captions_before", "captions_after", "concepts"):
                rec[key] = [str(s) for s in data[key]]
            if "stage_names" in data:  # edits cached before stage times were kept have none
                rec["stages"] = {str(k): round(float(v), 3) for k, v in zip(data["stage_names"], data["stage_seconds"])}
        return rec

    # ---- the run
    def run(self) -> dict:
        """Every method on every turn; returns the records and the images the report and figures need."""
        start = time.perf_counter()
        pairs = single_change_pairs(self.cfg.pairs, self.cfg.seed, self.cfg.attributes)
        single = [pair_turn(p) for p in pairs]
        multi = [session_turns(s) for s in sessions(self.cfg.sessions, self.cfg.seed, self.cfg.turns)]
        records, images = [], {}
        available = {m: self.methods.available(m) for m in self.cfg.methods}
        chains = [self._missing(m, [t], to_u8(t.input_image)) for m in self.cfg.methods if available[m] for t in single]
        chains += [
            self._missing(m, s, to_u8(s[0].input_image)) for m in self.cfg.methods if available[m] for s in multi
        ]
        self._compute([c for c in chains if c is not None])
        for turn in single:
            records.append(self._record(NO_EDIT, turn, None, to_u8(turn.input_image)))
            records.append(self._record(TARGET, turn, None, to_u8(turn.target_image)))
            records.append(self._record(ROUND_TRIP, turn, None, self._round_trip(turn)))
        for method in (m for m in self.cfg.methods if available[m]):
            for turn in single:
                data = self._edit(method, turn, to_u8(turn.input_image))
                images[(method, turn.item, 1)] = data["image"]
                records.append(self._record(method, turn, data, data["image"]))
            for session in multi:
                current = to_u8(session[0].input_image)
                for turn in session:
                    data = self._edit(method, turn, current)
                    current = data["image"]
                    images[(method, turn.item, turn.step)] = current
                    records.append({**self._record(method, turn, data, current), "protocol": "multi-turn"})
        for r in records:
            r.setdefault("protocol", "single-turn")
        return {
            "records": records, "images": images, "single": single, "multi": multi, "available": available,
            "pairs": [p.index for p in pairs], "fingerprints": self.fingerprints, "config": asdict(self.cfg),
            "run": {"wall_s": round(time.perf_counter() - start, 1), "edits": self.units, "edits_from_cache": self.units - self.computed,
                    "edit_s": round(sum(r.get("seconds", 0.0) for r in records), 1), "torch_threads": torch.get_num_threads()},
            "methods": {m: METHODS[m] for m in self.cfg.methods}, "family": self.methods.family,
            "steps": {m: self.cfg.steps_for(m, self.methods.family) for m in self.cfg.methods},
            **({"flowedit_strength": self._flowedit_strength()} if self.methods.flow else {}),
        }  # fmt: skip

    def _flowedit_strength(self) -> float:
        """The share of FlowEdit's steps the flow methods edit on this model (its default for the model)."""
        from segakit.editing.flow import flowedit_defaults

        pipe = self.methods.pipe
        return flowedit_defaults(self.methods.family, getattr(pipe, "model_name", None))["strength"]


def _plain(v):
    return v if isinstance(v, (bool, str, int, float)) or v is None else str(v)
