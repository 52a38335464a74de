"""`segakit eval embedded` and `segakit eval sega` measure SEGA at the model's own edit defaults unless flags say
otherwise (segakit.sega.defaults: the U-Net model's 6 / 0.8 / 5, the flow model's 12 / 0.8 / 3)."""

import pytest


class _Stop(Exception):
    pass


def _edit(cfg):
    e = cfg.edit if hasattr(cfg, "n_prompts") else cfg  # QualityConfig holds an Edit; StudyConfig the fields
    return (e.scale, e.threshold, e.warmup)


@pytest.mark.parametrize("command, module, config, model, flags, expected", [
    ("embedded", "segakit.eval.embedded_quality", "QualityConfig", "embedded", [], (6.0, 0.8, 5)),
    ("embedded", "segakit.eval.embedded_quality", "QualityConfig", "embedded-flow", [], (10.0, 0.95, 3)),
    ("embedded", "segakit.eval.embedded_quality", "QualityConfig", "embedded-flow", ["--edit-scale", "7", "--edit-warmup", "4"], (7.0, 0.95, 4)),
    ("sega", "segakit.eval.sega_study", "StudyConfig", "embedded", [], (6.0, 0.8, 5)),
    ("sega", "segakit.eval.sega_study", "StudyConfig", "embedded-flow", [], (10.0, 0.95, 3)),
    ("sega", "segakit.eval.sega_study", "StudyConfig", "embedded-flow", ["--scale", "9", "--threshold", "0.9"], (9.0, 0.9, 3)),
])  # fmt: skip
def test_eval_takes_the_models_edit_defaults(
    monkeypatch, capsys, tmp_path, command, module, config, model, flags, expected
):
    import importlib

    from cli_runner import cli

    from segakit.sega.pipeline import SegaPipeline

    mod = importlib.import_module(module)
    real, seen = getattr(mod, config), {}

    def stop(cls, name, *a, **k):
        raise _Stop

    monkeypatch.setattr(mod, config, lambda **k: seen.setdefault("cfg", real(**k)))
    monkeypatch.setattr(SegaPipeline, "from_pretrained", classmethod(stop))
    with pytest.raises(_Stop):
        cli(monkeypatch, capsys, "eval", command, "--model", model, "--out", tmp_path / "r", *flags)
    assert _edit(seen["cfg"]) == expected
