"""The app's form as data: its widget values <-> an API request <-> a PNG's parameters.

The Gradio layout (:mod:`segakit.serve.webapp`) hands its widgets' values over as one flat list in the order of
:meth:`Form.from_values`; everything the app sends goes through the same :class:`GenerateRequest` as the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from segakit.sega.guidance import Edit, refresh_interval
from segakit.serve.schema import EditObject, GenerateRequest

ADD, REMOVE = "add", "remove"
NO_FAIR = "off"
ROW_FIELDS = 8  # active, concept, direction, scale, threshold, warmup, cooldown, weight


@dataclass
class ConceptRow:
    """One concept row: cool-down at or past the last step means never (the slider's right end)."""

    active: bool = False
    concept: str = ""
    direction: str = ADD
    scale: float = 10.0
    threshold: float = 0.8
    warmup: int = 5
    cooldown: int = 50
    weight: float = 1.0

    def edit(self, steps: int) -> EditObject:
        return EditObject(prompt=self.concept.strip(), scale=float(self.scale), threshold=float(self.threshold),
                          warmup=int(round(self.warmup)), cooldown=None if self.cooldown >= steps else int(round(self.cooldown)),
                          reverse=self.direction == REMOVE, weight=float(self.weight))  # fmt: skip

    @classmethod
    def blank(cls, defaults: Edit, max_steps: int) -> ConceptRow:
        return cls(
            scale=defaults.scale or 5.0,
            threshold=defaults.threshold or 0.9,
            warmup=defaults.warmup or 0,
            cooldown=max_steps,
        )


@dataclass
class Form:
    prompt: str = ""
    negative: str = ""
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    rows: list[ConceptRow] = field(default_factory=list)
    strengths: dict[str, float] = field(default_factory=dict)  # library direction -> lambda (0: off)
    fair: str = NO_FAIR
    safe: bool = False
    enhance: bool = False
    edit_refresh: int = 1  # each concept computed every K steps (1: exact SEGA; a PNG's "auto" shows as its K)
    guidance_refresh: int = 1  # the unconditional estimate every K steps (1: exact classifier-free guidance)

    @classmethod
    def from_values(cls, values: list, n_rows: int, names: list[str]) -> Form:
        """The flat widget values: prompt, negative, seed, steps, guidance, rows x 8, one per direction, fair, safe,
        enhance, concept refresh, guidance refresh (each left out: 1)."""
        head, rest = values[:5], values[5:]
        rows = [ConceptRow(*rest[i * ROW_FIELDS : (i + 1) * ROW_FIELDS]) for i in range(n_rows)]
        rest = rest[n_rows * ROW_FIELDS :]
        strengths = {n: float(v or 0) for n, v in zip(names, rest[: len(names)])}
        fair, safe, enhance = rest[len(names) : len(names) + 3]
        refresh, cfg_refresh = (list(rest[len(names) + 3 : len(names) + 5]) + [1, 1])[:2]
        return cls(str(head[0] or ""), str(head[1] or ""), int(head[2] or 0), int(head[3]), float(head[4]),
                   rows, strengths, fair or NO_FAIR, bool(safe), bool(enhance), int(refresh or 1), int(cfg_refresh or 1))  # fmt: skip

    def to_values(self) -> list:
        out: list = [self.prompt, self.negative, self.seed, self.steps, self.guidance]
        for r in self.rows:
            out += [r.active, r.concept, r.direction, r.scale, r.threshold, r.warmup, r.cooldown, r.weight]
        out += list(self.strengths.values())
        return out + [self.fair, self.safe, self.enhance, self.edit_refresh, self.guidance_refresh]

    def concepts(self) -> list[ConceptRow]:
        return [r for r in self.rows if r.active and r.concept.strip()]

    def request(
        self, plain: bool = False, steps: int | None = None, sweep: list[float] | None = None
    ) -> GenerateRequest:
        """The API request for this form; ``plain`` drops concepts and directions (the 'before' image)."""
        steps = self.steps if steps is None else steps
        edits = [] if plain else [r.edit(self.steps) for r in self.concepts()]
        if sweep is not None:
            edits = edits[:1]
        return GenerateRequest(
            prompt=self.prompt, negative_prompt=self.negative or None, seed=self.seed, steps=steps, guidance=self.guidance,
            edits=edits, sweep=sweep, directions=[] if plain else [f"{n}:{v:g}" for n, v in self.strengths.items() if v],
            fair=None if plain or self.fair == NO_FAIR else self.fair, safe=self.safe and not plain, enhance=self.enhance and not plain,
            edit_refresh=1 if plain or not edits else self.edit_refresh, guidance_refresh=self.guidance_refresh,
        )  # fmt: skip

    def has_guidance(self) -> bool:
        return bool(
            self.concepts() or any(self.strengths.values()) or self.fair != NO_FAIR or self.safe or self.enhance
        )

    @classmethod
    def from_params(cls, params: dict, blank: Form, library=None) -> Form:
        """A form showing a PNG's parameters (rows and directions beyond the form's are dropped)."""
        rows = [replace(r, active=False) for r in blank.rows]
        steps = int(params.get("steps", blank.steps))
        for i, e in enumerate(params.get("edits", [])[: len(rows)]):
            cooldown = e.get("cooldown")
            rows[i] = replace(rows[i], active=True, concept=e.get("prompt") or "", direction=REMOVE if e.get("reverse") else ADD,
                              scale=e.get("scale") if e.get("scale") is not None else rows[i].scale,
                              threshold=e.get("threshold") if e.get("threshold") is not None else rows[i].threshold,
                              warmup=e.get("warmup") if e.get("warmup") is not None else rows[i].warmup,
                              cooldown=rows[i].cooldown if cooldown is None else cooldown, weight=e.get("weight", 1.0))  # fmt: skip
        strengths = dict.fromkeys(blank.strengths, 0.0)
        if library is not None:
            by_file = {f: n for n, f in library.files.items()}
            for spec in params.get("directions", []):
                path, _, strength = spec.rpartition(":")
                name = by_file.get(Path(path).name)
                if name in strengths:
                    strengths[name] = float(strength)
        fair = params.get("fair") or NO_FAIR
        return cls(params.get("prompt", ""), params.get("negative_prompt") or "", int(params.get("seed", 0)), steps,
                   float(params.get("guidance") if params.get("guidance") is not None else blank.guidance), rows, strengths,
                   fair.partition("=")[0] if fair != NO_FAIR else NO_FAIR, bool(params.get("safe")), bool(params.get("enhance")),
                   refresh_interval(params.get("edit_refresh", 1), steps), int(params.get("guidance_refresh", 1)))  # fmt: skip
