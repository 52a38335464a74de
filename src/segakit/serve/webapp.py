"""The Gradio app: tab "Generate" (prompt, concept rows with sliders, library directions, before/after, a
strength strip, a live low-step preview while a slider moves) and tab "Edit" (its place; editing is not wired yet).

Every image downloads as the PNG that carries its parameters; dropping such a PNG on the app restores its form.
All work goes through the server's one queue (:class:`segakit.serve.service.Service`).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import gradio as gr

from segakit.core.errors import UserError
from segakit.core.images import png_params
from segakit.editing.params import FLOW_METHODS, UNET_METHODS, is_flow
from segakit.serve.editing import edit_params, submit_edit
from segakit.serve.form import ADD, NO_FAIR, REMOVE, ConceptRow, Form
from segakit.serve.service import Image, Service
from segakit.serve.worker import QueueFull

KEEP_DOWNLOADS_S = 3600  # written PNGs older than this are removed when a new one is written
STRIP_POINTS = 5


EDIT_HELP_EMBEDDED = (
    "Give an instruction: the embedded model captions the image and writes the captions before and after "
    "the edit with its own small captioner and caption writer (shown with the result). To use your own, "
    "say what the image shows and, for Pix2Pix-OnTheFly, what it should show after (one caption a line); "
    "for SEGA, the concepts (`+glasses`, `-beard`, one a line)."
)
EDIT_HELP_CAPTIONER = (
    "The embedded model captions the image itself (its own small captioner; a caption of yours skips it). Say "
    "what the image should show after the edit (one caption a line) for Pix2Pix-OnTheFly: its caption "
    "writer is not shipped yet. For SEGA, the concepts (`+glasses`, `-beard`, one a line)."
)
EDIT_HELP = (
    "This model has no captioner or caption writer: say what the image shows and, for Pix2Pix-OnTheFly, what it "
    "should show after (one caption a line); for SEGA, the concepts (`+glasses`, `-beard`, one a line)."
)


def edit_help(model: str) -> str:
    """The Edit tab's first line: what the user must type on this model."""
    from segakit.editing.caption_writer import EMBEDDED_CAPTION_WRITER
    from segakit.editing.captioner import EMBEDDED_CAPTIONER

    if model != "embedded" or not EMBEDDED_CAPTIONER.is_dir():
        return EDIT_HELP
    return EDIT_HELP_EMBEDDED if EMBEDDED_CAPTION_WRITER.is_dir() else EDIT_HELP_CAPTIONER


DISPLAY_SIDE = 256  # small images (the embedded model's 64x64) are shown enlarged; downloads keep the original


def _pil(image: Image):
    from io import BytesIO

    from PIL import Image as PILImage

    im = PILImage.open(BytesIO(image.png))
    k = DISPLAY_SIDE // max(im.size)
    return im.resize((im.width * k, im.height * k), PILImage.NEAREST) if k > 1 else im


class App:
    def __init__(self, service: Service) -> None:
        self.service = service
        limits = service.config.limits
        self.max_steps = limits.max_steps
        self.n_rows = min(limits.max_concepts, 6)
        self.names = service.library.names() if service.library is not None else []
        self.fair_choices = [NO_FAIR, *(service.library.fair_attributes() if service.library is not None else [])]
        self.downloads = Path(tempfile.mkdtemp(prefix="segakit-serve-"))
        self.flow = is_flow(getattr(getattr(service.pipe, "family", None), "name", None))  # SD3 / FLUX: flow edits
        from segakit.sega.defaults import default_steps

        steps = min(default_steps(service.config.model), self.max_steps)
        row = ConceptRow.blank(service.pipe.edit_defaults, self.max_steps)
        self.blank = Form(steps=steps, rows=[row] * self.n_rows, strengths=dict.fromkeys(self.names, 0.0))

    # --- work -------------------------------------------------------------------------------------------------
    def _run(self, form: Form, **kw) -> Image:
        try:
            return self.service.generate(self.service.params(form.request(**kw)))[0]
        except (UserError, QueueFull) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:
            if type(exc).__name__ == "ValidationError":  # a widget value pydantic refuses (e.g. an empty concept field)
                raise gr.Error(
                    f"A setting is not valid: {exc.errors()[0].get('msg', exc)}.", print_exception=False
                ) from None
            raise

    def _save(self, image: Image) -> str:
        now = time.time()
        for old in self.downloads.glob("*.png"):
            if now - old.stat().st_mtime > KEEP_DOWNLOADS_S:
                old.unlink(missing_ok=True)
        kind = "plain" if not image.params["edits"] and not image.params["directions"] else "edited"
        kind = "strip" if image.params.get("sweep") else kind
        path = self.downloads / f"segakit-{kind}-seed{image.params['seed']}-{time.time_ns() % 10**12}.png"
        path.write_bytes(image.png)
        return str(path)

    def full(self, *values):
        """Before (plain) and after (with concepts and directions) at the full step count."""
        form = Form.from_values(list(values), self.n_rows, self.names)
        after = self._run(form)
        before = self._run(form, plain=True) if form.has_guidance() else after
        files = [self._save(after)] + ([self._save(before)] if before is not after else [])
        return _pil(before), _pil(after), files, json.dumps(after.params, indent=1, sort_keys=True), "Done."

    def preview(self, *values):
        """The edited image at the preview's few steps (while a slider moves)."""
        form = Form.from_values(list(values), self.n_rows, self.names)
        steps = min(self.service.config.preview_steps, form.steps)
        return _pil(self._run(form, steps=steps)), f"Preview at {steps} steps; release the slider for the full render."

    def slider_release(self, *values):
        yield gr.skip(), *self.preview(*values)[:1], gr.skip(), gr.skip(), "Rendering..."
        yield self.full(*values)

    def strip(self, *values):
        form = Form.from_values(list(values), self.n_rows, self.names)
        concepts = form.concepts()
        if not concepts:
            raise gr.Error("Add a concept first: the strip varies the first concept's scale.", print_exception=False)
        top = max(float(concepts[0].scale), 1.0)
        image = self._run(form, sweep=[round(top * i / (STRIP_POINTS - 1), 3) for i in range(STRIP_POINTS)])
        return _pil(image), [self._save(image)]

    def restore(self, file):
        if file is None:
            return [gr.skip()] * (len(self.blank.to_values()) + self.n_rows + 1)
        try:
            params = png_params(Path(file).read_bytes(), Path(file).name)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        form = Form.from_params(params, self.blank, self.service.library)
        return [*form.to_values(), *[gr.update(visible=r.active) for r in form.rows], "Settings restored from the PNG."]

    @staticmethod
    def add_row(*active):
        flags = list(active)
        if False in flags:
            flags[flags.index(False)] = True
        return [*flags, *[gr.update(visible=a) for a in flags]]

    def remove_row(self, i: int):
        def fn(*active):
            flags = list(active)
            flags[i] = False
            return [*flags, *[gr.update(visible=a) for a in flags]]

        return fn

    @property
    def flowedit_mask(self) -> float:
        """FlowEdit's noise mask by default on this server's flow model (the embedded flow model's measured one)."""
        from segakit.editing.params import flow_defaults

        return flow_defaults("flowedit", self.service.pipe.family.name, self.service.config.model)["mask"]

    def edit_mask(self, method: str, mask) -> float | None:
        """The mask slider's value for the edit: on a flow model, its default left for a method that does not mask
        means none (a mask the user moved is checked, and refused there by name)."""
        mask = float(mask or 0.0)
        if self.flow and method != "flowedit" and mask == self.flowedit_mask:
            return None
        return mask

    def edit(self, image, instruction, method, source_caption, after, concepts, steps, inversion="ddim", mask=0.0, guidance=0.0, blend=False,
             sega_mask="intersect", threshold=0.9, blend_dilate=0):  # fmt: skip
        """The Edit tab: the result, the captions used, and the PNG that carries the edit's parameters."""
        from types import SimpleNamespace

        if image is None:
            raise gr.Error("Upload an image to edit first.", print_exception=False)
        lines = lambda text: [t.strip() for t in (text or "").splitlines() if t.strip()]  # noqa: E731
        req = SimpleNamespace(instruction=instruction or "", method=method, source_caption=(source_caption or "").strip() or None,
                              captions_before=[], captions_after=lines(after), concepts=lines(concepts), captions=3, seed=0,
                              steps=int(steps) or None, guidance=float(guidance) if guidance else None,
                              inversion=None if self.flow else inversion or "ddim",
                              mask=self.edit_mask(method, mask), blend=bool(blend), sega_mask=sega_mask or "intersect",
                              threshold=0.9 if threshold is None else float(threshold), blend_dilate=int(blend_dilate or 0),
                              source_guidance=None, skip=None, eta=0.0, eta_stop=None, gamma=0.0, size=None)  # fmt: skip
        try:
            params = edit_params(req, self.service.config.model, self.service.config.limits)
            done = submit_edit(self.service, image, params).future.result()[0]
        except (UserError, QueueFull) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        meta = done.params
        path = self.downloads / f"segakit-edit-seed{meta['seed']}-{time.time_ns() % 10**12}.png"
        path.write_bytes(done.png)
        before = meta.get("captions_before") or [meta.get("source_caption") or ""]
        written = (
            "before: "
            + " | ".join(before)
            + "\nafter: "
            + " | ".join(meta.get("captions_after") or meta.get("concepts") or [])
        )
        return _pil(done), meta.get("source_caption") or "", written, [str(path)]

    # --- layout -----------------------------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        b = self.blank
        with gr.Blocks(title="segakit") as demo:
            gr.Markdown(f"# segakit\nModel: `{self.service.config.model}`. Concepts steer the image with SEGA; "
                        "every image downloads as a PNG that carries its parameters.")  # fmt: skip
            with gr.Tab("Generate", elem_id="tab-generate"):
                with gr.Row():
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(
                            label="Prompt", value=b.prompt, placeholder="a face of a person", elem_id="prompt"
                        )
                        negative = gr.Textbox(label="Negative prompt", value="", elem_id="negative")
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, elem_id="seed")
                            steps = gr.Slider(1, self.max_steps, value=b.steps, step=1, label="Steps", elem_id="steps")
                            guidance = gr.Slider(
                                0, 20, value=b.guidance, step=0.5, label="Guidance", elem_id="guidance"
                            )
                        gr.Markdown("### Concepts")
                        actives, groups, rows, removes = [], [], [], []
                        for i, r in enumerate(b.rows):
                            actives.append(gr.Checkbox(value=False, visible=False, elem_id=f"active-{i}"))
                            with gr.Group(visible=False, elem_id=f"concept-row-{i}") as group:
                                with gr.Row():
                                    concept = gr.Textbox(
                                        label=f"Concept {i + 1}",
                                        value="",
                                        placeholder="glasses",
                                        elem_id=f"concept-{i}",
                                        scale=3,
                                    )
                                    direction = gr.Radio(
                                        [ADD, REMOVE], value=ADD, label="Direction", elem_id=f"direction-{i}", scale=2
                                    )
                                    removes.append(gr.Button("Remove", elem_id=f"remove-{i}", scale=1, size="sm"))
                                with gr.Row():
                                    scale = gr.Slider(
                                        0, 30, value=r.scale, step=0.5, label="Scale", elem_id=f"scale-{i}"
                                    )
                                    threshold = gr.Slider(
                                        0,
                                        0.99,
                                        value=r.threshold,
                                        step=0.01,
                                        label="Threshold",
                                        elem_id=f"threshold-{i}",
                                    )
                                    warmup = gr.Slider(
                                        0,
                                        self.max_steps,
                                        value=min(r.warmup, self.max_steps),
                                        step=1,
                                        label="Warm-up",
                                        elem_id=f"warmup-{i}",
                                    )
                                    cooldown = gr.Slider(
                                        1,
                                        self.max_steps,
                                        value=r.cooldown,
                                        step=1,
                                        label="Cool-down (right end: never)",
                                        elem_id=f"cooldown-{i}",
                                    )
                                    weight = gr.Slider(
                                        0, 5, value=r.weight, step=0.1, label="Weight", elem_id=f"weight-{i}"
                                    )
                            groups.append(group)
                            rows.append([actives[-1], concept, direction, scale, threshold, warmup, cooldown, weight])
                        add = gr.Button("Add concept", elem_id="add-concept", size="sm")
                        edit_refresh = gr.Slider(1, self.max_steps, value=b.edit_refresh, step=1, elem_id="edit-refresh",
                                                 label="Concept refresh: compute each concept every K steps, reuse its direction in between (1: exact SEGA; 2-4 run faster)")  # fmt: skip
                        guidance_refresh = gr.Slider(1, self.max_steps, value=b.guidance_refresh, step=1, elem_id="guidance-refresh",
                                                     label="Guidance refresh: the unconditional estimate every K steps (1: exact CFG; 2 runs faster; needs guidance above 1)")  # fmt: skip
                        with gr.Accordion("Directions (self-discovered, h-space)", open=False):
                            strengths = [
                                gr.Slider(-1.5, 1.5, value=0, step=0.05, label=f"{n} (lambda)", elem_id=f"dir-{n}")
                                for n in self.names
                            ]
                            with gr.Row():
                                fair = gr.Dropdown(self.fair_choices, value=NO_FAIR, label="Fair", elem_id="fair")
                                safe = gr.Checkbox(label="Safe", elem_id="safe")
                                enhance = gr.Checkbox(label="Enhance", elem_id="enhance")
                        with gr.Row():
                            run = gr.Button("Generate", variant="primary", elem_id="generate")
                            strip_btn = gr.Button("Strength strip", elem_id="strip")
                        restore = gr.File(
                            label="Drop a segakit PNG here to restore its settings",
                            file_types=[".png"],
                            elem_id="restore",
                        )
                    with gr.Column(scale=2):
                        with gr.Row():
                            before = gr.Image(
                                label="Before (plain)",
                                type="pil",
                                format="png",
                                height=280,
                                elem_id="before",
                                buttons=["fullscreen"],
                                interactive=False,
                            )
                            after = gr.Image(
                                label="After (with concepts)",
                                type="pil",
                                format="png",
                                height=280,
                                elem_id="after",
                                buttons=["fullscreen"],
                                interactive=False,
                            )
                        status = gr.Markdown("", elem_id="status")
                        download = gr.File(label="Download the PNGs (edited, then plain; they carry their parameters)", file_count="multiple",
                                           elem_id="download", interactive=False)  # fmt: skip
                        strip_img = gr.Image(
                            label="Strength strip (first concept)",
                            type="pil",
                            format="png",
                            height=160,
                            elem_id="strip-image",
                            buttons=["fullscreen"],
                            interactive=False,
                        )
                        strip_file = gr.File(
                            label="Download the strip",
                            file_count="multiple",
                            elem_id="strip-download",
                            interactive=False,
                        )
                        params_box = gr.Code(
                            label="Parameters", language="json", elem_id="parameters", interactive=False
                        )
            with gr.Tab("Edit", elem_id="tab-edit"):
                gr.Markdown(edit_help(self.service.config.model), elem_id="edit-help")
                with gr.Row():
                    with gr.Column():
                        source = gr.Image(label="Image to edit", type="pil", elem_id="edit-source")
                        instruction = gr.Textbox(
                            label="Instruction", placeholder="give her glasses", elem_id="edit-instruction"
                        )
                        methods = list(FLOW_METHODS if self.flow else UNET_METHODS)  # SD3 / FLUX: docs/flow.md
                        method = gr.Radio(methods, value=methods[0], label="Method", elem_id="edit-method")
                        inversion = gr.Radio(["ddim", "ddpm"], value="ddim", label="Inversion (onthefly: ddim is the paper's, ddpm keeps more of the image)",
                                             elem_id="edit-inversion", visible=not self.flow)  # fmt: skip
                        source_caption = gr.Textbox(
                            label="What the image shows",
                            value="",
                            placeholder="a face of a woman",
                            elem_id="edit-source-caption",
                        )
                        edit_after = gr.Textbox(
                            label="Captions after the edit (onthefly)",
                            lines=2,
                            value="",
                            placeholder="a face of a woman with glasses",
                            elem_id="edit-after",
                        )
                        concepts = gr.Textbox(
                            label="Concepts (sega)", lines=2, value="", placeholder="+glasses", elem_id="edit-concepts"
                        )
                        edit_steps = gr.Slider(0, self.service.config.limits.max_steps, value=0, step=1, elem_id="edit-steps",
                                               label="Steps (0: the method's default, e.g. 25 on U-Nets, FlowEdit's 50 on SD3 and 28 on FLUX)")  # fmt: skip
                        with gr.Row():
                            edit_guidance = gr.Number(
                                0, label="Guidance (0: the method's default)", minimum=0, elem_id="edit-guidance"
                            )
                            mask_label = (f"Mask (flowedit; this model's default {self.flowedit_mask})" if self.flow
                                          else "Mask (onthefly on ddpm; 0.98 with guidance 5 keeps more)")  # fmt: skip
                            edit_mask = gr.Slider(0, 0.99, value=self.flowedit_mask if self.flow else 0, step=0.01,
                                                  label=mask_label, elem_id="edit-mask")  # fmt: skip
                            edit_blend = gr.Checkbox(
                                False, label="Blend (sega, or a mask: hold the rest on the input)", elem_id="edit-blend"
                            )
                        with gr.Row():
                            sega_mask = gr.Radio(["intersect", "attention", "noise"], value="intersect", label="SEGA masks (noise, threshold 0.99, blend: keeps more)",
                                                 elem_id="edit-sega-mask")  # fmt: skip
                            threshold = gr.Slider(
                                0, 0.995, value=0.9, step=0.005, label="Threshold (sega)", elem_id="edit-threshold"
                            )
                            blend_dilate = gr.Slider(
                                0,
                                8,
                                value=0,
                                step=1,
                                label="Blend dilation (latent pixels)",
                                elem_id="edit-blend-dilate",
                            )
                        edit_btn = gr.Button("Edit", variant="primary", elem_id="edit-run")
                    with gr.Column():
                        caption_box = gr.Textbox(
                            label="Caption of the image", interactive=False, elem_id="edit-caption"
                        )
                        captions_box = gr.Textbox(
                            label="Captions used (before / after)", lines=4, interactive=False, elem_id="edit-captions"
                        )
                        result = gr.Image(label="Result", type="pil", interactive=False, elem_id="edit-result")
                        edit_file = gr.File(label="Download the edited PNG (it carries the edit's parameters)", file_count="multiple",
                                            elem_id="edit-download", interactive=False)  # fmt: skip
                edit_btn.click(self.edit, [source, instruction, method, source_caption, edit_after, concepts, edit_steps, inversion, edit_mask, edit_guidance, edit_blend,
                                        sega_mask, threshold, blend_dilate],
                               [result, caption_box, captions_box, edit_file], concurrency_limit=1, api_name="edit")  # fmt: skip

            flat = [
                prompt,
                negative,
                seed,
                steps,
                guidance,
                *[c for row in rows for c in row],
                *strengths,
                fair,
                safe,
                enhance,
                edit_refresh,
                guidance_refresh,
            ]
            outputs = [before, after, download, params_box, status]
            # the endpoints meant for callers (gradio_client: /generate, /strip, /edit); the UI's own events are private
            run.click(self.full, flat, outputs, concurrency_limit=1, api_name="generate")
            strip_btn.click(self.strip, flat, [strip_img, strip_file], concurrency_limit=1, api_name="strip")
            for slider in [guidance, *[c for row in rows for c in row[3:]], *strengths]:
                slider.input(self.preview, flat, [after, status], trigger_mode="always_last", show_progress="hidden", concurrency_limit=1,
                             api_visibility="private")  # fmt: skip
                slider.release(
                    self.slider_release,
                    flat,
                    outputs,
                    trigger_mode="always_last",
                    concurrency_limit=1,
                    api_visibility="private",
                )
            add.click(self.add_row, actives, [*actives, *groups], api_visibility="private")
            for i, button in enumerate(removes):
                button.click(self.remove_row(i), actives, [*actives, *groups], api_visibility="private")
            restore.upload(self.restore, restore, [*flat, *groups, status], api_visibility="private")
        return demo


def build_app(service: Service) -> gr.Blocks:
    return App(service).blocks()
