"""`segakit world ...`: outputs, determinism across runs, streaming memory, errors (exit 2, no partial files)."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import pytest

from segakit.cli.world import world_app
from segakit.core.errors import UserError
from segakit.world.schema import ATTRIBUTES


def run(args):
    """Call the sub-app like segakit.cli.main does: UserError -> exit 2."""
    try:
        world_app(args, standalone_mode=False)
        return 0
    except UserError:
        return 2
    except Exception as exc:  # click usage errors (typer may vendor its own click)
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            return 2
        raise


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from segakit.train.oracle import TrainConfig, train

    d = tmp_path_factory.mktemp("oracle")
    train(
        TrainConfig(out_dir=str(d), max_steps=1, batch_size=4, widths=(4, 8), feature_dim=8, eval_every=0, log_every=1)
    )
    return d / "oracle.safetensors"


def test_schema_json(capsys):
    assert run(["schema", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["attributes"] == {a: list(v) for a, v in ATTRIBUTES.items()}
    assert set(d["priors"]) == set(ATTRIBUTES) and "synonyms" in d and "conditional_priors" in d


def test_sample_writes_pngs_and_labels_deterministically(tmp_path):
    assert run(["sample", "--n", "5", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert run(["sample", "--n", "5", "--seed", "3", "--out", str(tmp_path / "b")]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [f"00000{i}.png" for i in range(5)] + ["labels.jsonl"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    recs = [json.loads(line) for line in (tmp_path / "a" / "labels.jsonl").read_text().splitlines()]
    assert len(recs) == 5 and recs[0]["file"] == "000000.png" and "caption" in recs[0]
    assert all(set(ATTRIBUTES) <= set(r) for r in recs)
    assert isinstance(recs[0]["glasses"], bool)


def test_sample_set_pins_attributes(tmp_path):
    assert run(["sample", "--n", "6", "--out", str(tmp_path), "--set", "role=doctor", "--set", "glasses=true"]) == 0
    recs = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert all(r["role"] == "doctor" and r["glasses"] is True for r in recs)


def test_pairs_cli(tmp_path):
    assert run(["pairs", "--n", "4", "--seed", "1", "--out", str(tmp_path), "--attribute", "glasses,hat"]) == 0
    recs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(recs) == 4
    for r in recs:
        assert (tmp_path / r["source"]).exists() and (tmp_path / r["target"]).exists()
        assert set(r["changes"]) <= {"glasses", "hat"} and r["instruction"]


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--n", "0", "--out", "{d}/x"],
        ["sample", "--n", "-3", "--out", "{d}/x"],
        ["sample", "--n", "2", "--seed", "-1", "--out", "{d}/x"],
        ["sample", "--n", "2", "--out", "{d}/x", "--set", "role=astronaut"],
        ["sample", "--n", "2", "--out", "{d}/x", "--set", "wings=true"],
        ["sample", "--n", "2", "--out", "{d}/x", "--set", "bangs=true", "--set", "hair_style=bald"],
        ["sample", "--n", "2", "--out", "{d}/file.txt/x"],
        ["pairs", "--n", "0", "--out", "{d}/x"],
        ["pairs", "--n", "2", "--out", "{d}/x", "--attribute", "wings"],
        ["classify", "{d}/missing", "--json"],
        ["classify", "{d}/empty", "--json"],
        ["sample", "--n", "abc", "--out", "{d}/x"],
    ],
)
def test_bad_input_exits_2_without_files(tmp_path, args):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    assert run([a.format(d=tmp_path) for a in args]) == 2
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file.txt"]


def test_unwritable_folder_via_main(tmp_path):
    (tmp_path / "file.txt").write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "segakit.cli", "world", "sample", "--n", "2", "--out", str(tmp_path / "file.txt" / "x")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1 and "file.txt" in out.stderr


def test_classify_with_labels_and_per_image(tmp_path, tiny_weights, capsys):
    d = tmp_path / "faces"
    assert run(["sample", "--n", "6", "--seed", "0", "--out", str(d)]) == 0
    capsys.readouterr()
    per = tmp_path / "per.jsonl"
    code = run(
        [
            "classify",
            str(d),
            "--json",
            "--against",
            str(d / "labels.jsonl"),
            "--per-image",
            str(per),
            "--weights",
            str(tiny_weights),
        ]
    )
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 6 and set(res["frequencies"]) == set(ATTRIBUTES) and set(res["accuracy"]) == set(ATTRIBUTES)
    assert res["frequencies"]["glasses"].keys() == {"false", "true"}
    assert sum(res["frequencies"]["role"].values()) == pytest.approx(1.0)
    lines = [json.loads(x) for x in per.read_text().splitlines()]
    assert len(lines) == 6 and len(lines[0]["probabilities"]["role"]) == len(ATTRIBUTES["role"])


def test_classify_bad_against_leaves_no_per_image(tmp_path, tiny_weights):
    d = tmp_path / "faces"
    assert run(["sample", "--n", "2", "--out", str(d)]) == 0
    (tmp_path / "bad.jsonl").write_text('{"file": "000000.png"}\n')
    per = tmp_path / "per.jsonl"
    assert (
        run(
            [
                "classify",
                str(d),
                "--against",
                str(tmp_path / "bad.jsonl"),
                "--per-image",
                str(per),
                "--weights",
                str(tiny_weights),
            ]
        )
        == 2
    )
    assert not per.exists()


def test_streaming_memory_is_flat(tmp_path):
    from segakit.world.dataset import write_samples
    from segakit.world.pairs import write_pairs

    def peak(fn):
        tracemalloc.start()
        fn()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small = peak(lambda: write_samples(tmp_path / "s1", 40, 0))
    large = peak(lambda: write_samples(tmp_path / "s2", 320, 0))
    assert large < small * 1.5 + 200_000, (small, large)
    small = peak(lambda: write_pairs(tmp_path / "p1", 20, 0))
    large = peak(lambda: write_pairs(tmp_path / "p2", 160, 0))
    assert large < small * 1.5 + 200_000, (small, large)
