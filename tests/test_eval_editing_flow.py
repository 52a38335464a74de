"""`segakit eval editing` on flow models (issue 33): the flow methods on a small random SD3 pipeline end to end with a
random oracle (this tests the bookkeeping, not the numbers), their cache keys and steps, the methods chosen by the
model's family and the other family's refused by name."""

import json

import numpy as np
import pytest
import torch
from cli_runner import cli
from diffusers import StableDiffusion3Pipeline
from tiny_flow_models import flow_pipe, sd3_components

from segakit.core.errors import UserError, spelling
from segakit.editing.caption_writer import EMBEDDED_CAPTION_WRITER, CaptionWriter
from segakit.editing.flow import PAPER
from segakit.editing.pipeline import EditPipeline
from segakit.eval.editing_study import (
    FLOW_METHODS,
    NO_EDIT,
    ROUND_TRIP,
    TARGET,
    UNET_METHODS,
    EditingStudy,
    EditingStudyConfig,
    Methods,
    write_report,
)
from segakit.eval.editing_study.config import DEFAULT_METHODS
from segakit.eval.editing_study.items import pair_turn
from segakit.world.oracle import Oracle, OracleNet
from segakit.world.pairs import pair_at

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A FlowEditPipeline over a tiny SD3 SegaPipeline with the embedded caption writer, a random oracle, the folder."""
    tmp = tmp_path_factory.mktemp("flow-study")
    components = sd3_components(tmp / "parts")
    StableDiffusion3Pipeline(**components).save_pretrained(tmp / "sd3", safe_serialization=True)
    writer = CaptionWriter.from_pretrained(EMBEDDED_CAPTION_WRITER) if EMBEDDED_CAPTION_WRITER.is_dir() else None
    pipe = EditPipeline.from_pipe(
        flow_pipe(StableDiffusion3Pipeline, components), caption_writer=writer, model_name="tiny"
    )
    torch.manual_seed(0)
    return pipe, Oracle(OracleNet()), tmp / "sd3"


def test_every_flow_method_runs_end_to_end_and_a_rerun_reads_the_cache(parts, tmp_path):
    pipe, oracle, _ = parts
    if pipe.caption_writer is None:
        pytest.skip("the embedded caption writer is not in this installation")
    cfg = EditingStudyConfig(pairs=2, sessions=1, turns=2, steps=3, methods=FLOW_METHODS, figure_rows=1)
    first = EditingStudy(Methods(pipe, cfg), oracle, None, cfg, tmp_path / "cache").run()
    assert first["available"] == dict.fromkeys(FLOW_METHODS, True) and first["family"] == "sd3"
    assert first["run"]["edits"] == 6 * (2 + 2) and first["run"]["edits_from_cache"] == 0
    assert first["steps"] == dict.fromkeys(FLOW_METHODS, 3)  # --steps given: every method's
    rows = [r for r in first["records"] if r["protocol"] == "single-turn"]
    turn = first["single"][0]
    by = {m: [r for r in rows if r["method"] == m] for m in (*FLOW_METHODS, NO_EDIT, ROUND_TRIP, TARGET)}
    assert all(len(v) == 2 for v in by.values())
    assert by["flowedit-gold"][0]["captions_after"] == [turn.target_caption]
    assert by["regenerate"][0]["captions_before"] == by["regenerate"][0]["captions_after"] == [turn.source_caption]
    assert all(r["concepts"] for r in by["sega-flow"]) and not by["flowedit-gold"][0]["concepts"]
    for m in ("flowedit-lm", "rf-inversion-lm"):  # the caption writer's captions, not the gold ones
        assert all(len(r["captions_after"]) == cfg.captions for r in by[m])
    for m in FLOW_METHODS:  # each turn of a session edits the method's own previous result, at the world's side
        assert [r["turn"] for r in first["records"] if r["method"] == m and r["protocol"] == "multi-turn"] == [1, 2]
        assert first["images"][(m, turn.item, 1)].shape == (3, 64, 64)
    for r in first["records"]:
        assert 0 <= r["success"] <= 1 and 0 <= r["others_unchanged"] <= 1
    again = EditingStudy(Methods(pipe, cfg), oracle, None, cfg, tmp_path / "cache").run()
    assert again["run"]["edits_from_cache"] == again["run"]["edits"] == first["run"]["edits"]
    assert again["records"] == first["records"]  # the same numbers, wall times included
    write_report(again, tmp_path / "out", "segakit eval editing --model tiny", "tiny")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["summary"]) == [NO_EDIT, ROUND_TRIP, TARGET, *FLOW_METHODS]
    assert all(report["summary"][m]["single"]["edits"] == 2 for m in FLOW_METHODS)
    assert (
        report["family"] == "sd3"
        and "rf-inversion-gold 3 inversion steps + 3 sampling steps" in (tmp_path / "out" / "report.md").read_text()
    )


def test_the_flow_methods_run_on_flux_at_fluxs_own_settings(tmp_path):
    """FLUX: the paper's FlowEdit settings for FLUX (28 steps, the last 24 edited) and the same bookkeeping."""
    from diffusers import FluxPipeline
    from tiny_flow_models import flux_components

    pipe = EditPipeline.from_pipe(flow_pipe(FluxPipeline, flux_components(tmp_path / "parts")), model_name="tiny-flux")
    methods = ("flowedit-gold", "rf-inversion-gold", "sega-flow", "regenerate")
    cfg = EditingStudyConfig(pairs=1, sessions=0, steps=2, methods=methods, figure_rows=0)
    study = EditingStudy(Methods(pipe, cfg), Oracle(OracleNet()), None, cfg, tmp_path / "cache")
    result = study.run()
    assert result["family"] == "flux" and result["run"]["edits"] == 4
    assert {r["method"] for r in result["records"]} >= set(methods)
    turn = result["single"][0]
    u8 = np.asarray(turn.input_image).transpose(2, 0, 1)
    unset = EditingStudyConfig(**{**cfg.__dict__, "steps": None})
    edit = (
        EditingStudy(Methods(pipe, unset), Oracle(OracleNet()), None, unset, tmp_path / "cache")
        ._unit("flowedit-gold", turn, u8)
        .spec["edit"]
    )
    assert edit["steps"] == PAPER["flux"]["steps"] == 28 and edit["guidance_scale"] == PAPER["flux"]["target_guidance"]
    assert round((1 - edit["skip"]) * 28) == 24


def test_the_editors_defaults_are_in_the_key_and_only_sega_flow_takes_the_sega_options(parts, tmp_path):
    pipe, oracle, _ = parts
    cfg = EditingStudyConfig(pairs=1, sessions=0, methods=FLOW_METHODS)  # --steps not given: each editor's own
    study = EditingStudy(Methods(pipe, cfg), oracle, None, cfg, tmp_path / "cache")
    turn = pair_turn(pair_at(0, 0))
    u8 = np.asarray(turn.input_image).transpose(2, 0, 1)
    edit = {m: study._unit(m, turn, u8).spec["edit"] for m in FLOW_METHODS}
    paper = PAPER["sd3"]
    assert edit["flowedit-gold"]["steps"] == paper["steps"] == 50 and edit["flowedit-gold"]["skip"] == 0.34
    assert edit["flowedit-gold"]["guidance_scale"] == paper["target_guidance"] and edit["flowedit-gold"]["size"] == 64
    assert (
        edit["flowedit-gold"]["captions_after"] == [turn.target_caption] and edit["flowedit-lm"]["captions_after"] == []
    )
    assert {edit[m]["steps"] for m in ("rf-inversion-gold", "sega-flow", "regenerate")} == {28}
    assert edit["regenerate"]["captions_after"] == [turn.source_caption] and edit["sega-flow"]["concepts"]
    assert study.cfg.steps_for("sega-flow", "sd3") == 28 and EditingStudyConfig().steps_for("sega") == 25
    names = {}
    for change in ({}, {"sega_scale": 7.0}, {"steps": 4}):
        c = EditingStudyConfig(**{**cfg.__dict__, **change})
        s = EditingStudy(Methods(pipe, c), oracle, None, c, tmp_path / "cache")
        names[str(change)] = {m: s.cache.path(s._unit(m, turn, u8)).name for m in FLOW_METHODS}
    base, scale, steps = names.values()
    assert [m for m in FLOW_METHODS if scale[m] != base[m]] == ["sega-flow"]
    assert all(steps[m] != base[m] for m in FLOW_METHODS)


@pytest.mark.parametrize(
    "family, kwargs, message",
    [
        ("sd3", {"methods": ("flowedit-gold", "onthefly-gold")},
         "--methods has onthefly-gold, which edits U-Net models; on this SD3 model choose from flowedit-gold, "
         "flowedit-lm, rf-inversion-gold, rf-inversion-lm, sega-flow, regenerate."),
        ("flux", {"methods": ("ledits-diffusers",)}, "--methods has ledits-diffusers, which edits U-Net models; on this FLUX"),
        ("sd3", {"methods": ("onthefly-lm-ddpm",)}, "--methods has onthefly-lm-ddpm, which edits U-Net models"),
        ("unet", {"methods": ("sega", "flowedit-gold")},
         "--methods has flowedit-gold, which edits SD3 and FLUX models; on this U-Net model choose from onthefly-gold,"),
        ("sd3", {"methods": FLOW_METHODS, "skip": 0.2}, "--skip 0.2 is an option of the U-Net methods; no method on this SD3"),
        ("sd3", {"methods": FLOW_METHODS, "blend": True}, "--blend True is an option of the U-Net methods"),
        ("sd3", {"methods": ("magic",)}, "--methods has 'magic', which is not one of flowedit-gold, flowedit-lm,"),
    ],
)  # fmt: skip
def test_the_other_familys_methods_are_refused_by_name(family, kwargs, message):
    with spelling("cli"), pytest.raises(UserError) as info:
        EditingStudyConfig(**kwargs).check(family)
    assert str(info.value).startswith(message) and str(info.value).count(". ") == 0


def test_a_study_of_unet_methods_on_a_flow_pipeline_is_refused(parts, tmp_path):
    pipe, oracle, _ = parts
    cfg = EditingStudyConfig(pairs=1, sessions=0, methods=("sega",))
    with pytest.raises(UserError, match="--methods has sega, which edits U-Net models; on this SD3 model"):
        EditingStudy(Methods(pipe, cfg), oracle, None, cfg, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _recording(monkeypatch):
    """Record the study's config as the CLI checks it; stop the command where it would load the model."""
    seen = {}
    check = EditingStudyConfig.check

    def record(self, family=None):
        seen["cfg"], seen["family"] = self, family
        return check(self, family)

    def stop(*args, **kwargs):
        seen["loading"] = kwargs
        raise UserError("stopped before loading")

    monkeypatch.setattr(EditingStudyConfig, "check", record)
    monkeypatch.setattr(EditPipeline, "from_pretrained", stop)
    return seen


def test_cli_defaults_by_family(monkeypatch, capsys, parts, tmp_path):
    folder = parts[2]
    seen = _recording(monkeypatch)
    code, _, err = cli(monkeypatch, capsys, "eval", "editing", "--model", folder, "--out", tmp_path / "a")
    assert code == 2 and "stopped before loading" in err and seen["family"] == "sd3"
    assert seen["cfg"].methods == FLOW_METHODS and seen["cfg"].steps is None  # each editor's own steps
    assert seen["loading"]["pipeline_class"].__name__ == "SegaPipeline"  # sega-flow runs SegaPipeline's loop
    code, _, err = cli(monkeypatch, capsys, "eval", "editing", "--out", tmp_path / "b")  # the embedded U-Net model
    assert code == 2 and seen["family"] == "unet" and "pipeline_class" not in seen["loading"]
    assert seen["cfg"].methods == DEFAULT_METHODS["unet"] and seen["cfg"].steps == 25  # as before
    assert set(DEFAULT_METHODS["unet"]) == set(UNET_METHODS) - {"onthefly-auto-ddpm"}


@pytest.mark.parametrize(
    "model, methods, named",
    [("sd3", "flowedit-gold,onthefly-gold", "onthefly-gold"), ("embedded", "sega,sega-flow", "sega-flow")],
)
def test_cli_refuses_the_other_familys_method_before_loading(
    monkeypatch, capsys, parts, tmp_path, model, methods, named
):
    seen = _recording(monkeypatch)
    args = ["--model", parts[2]] if model == "sd3" else []
    code, _, err = cli(monkeypatch, capsys, "eval", "editing", *args, "--methods", methods, "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"--methods has {named}, which edits" in err and "loading" not in seen and not (tmp_path / "o").exists()


def test_cli_runs_the_flow_study_on_a_folder(monkeypatch, capsys, parts, tmp_path):
    """A folder brings no caption writer: the -lm methods are reported unavailable, the others run."""
    out = tmp_path / "study"
    args = ["eval", "editing", "--model", parts[2], "--pairs", 1, "--sessions", 0, "--steps", 2, "--threads", 1,
            "--figure-rows", 1, "--out", out]  # fmt: skip
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"])[3:] == list(FLOW_METHODS) and report["steps"] == dict.fromkeys(FLOW_METHODS, 2)
    assert {m for m, e in report["summary"].items() if not e["available"]} == {"flowedit-lm", "rf-inversion-lm"}
    assert report["run"]["edits"] == 4 and report["config"]["steps"] == 2
