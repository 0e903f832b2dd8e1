"""Composed presets: ``inherits`` resolution, and every shipped preset resolving to the values
recorded in ``tests/resolved_presets.json`` (update it when a preset is meant to change)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtrl.config import PRESET_DIR, DistillConfig, load_config, preset_names, to_dict
from mtrl.errors import MtrlError

RECORDED = json.loads((Path(__file__).parent / "resolved_presets.json").read_text())
BASES = {"mt10", "mt50"}
# presets whose recipe includes its replay ratio, batch and budget (BRC: the paper's 2
# updates per step, ~1024-row batches, 1M steps per task)
OWN_BUDGET = {"mt10_brc", "mt50_brc"}


def resolved(name: str) -> dict:
    raw = OmegaConf.load(PRESET_DIR / f"{name}.yaml")
    schema = DistillConfig if "distill" in raw else None
    return to_dict(load_config(name, schema=schema) if schema else load_config(name))


def test_every_preset_is_recorded_and_the_bases_are_the_multihead_presets():
    assert set(preset_names()) - BASES == set(RECORDED)
    for base in BASES:
        assert {**resolved(base), "name": "x"} == {**resolved(f"{base}_mtmhsac"), "name": "x"}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_preset_resolves_to_its_recorded_values(name):
    assert resolved(name) == RECORDED[name]


def test_per_method_presets_hold_only_what_differs():
    for path in PRESET_DIR.glob("mt*_*.yaml"):
        raw = OmegaConf.load(path)
        if "distill" in raw:
            continue
        assert raw.inherits == path.stem.split("_")[0], path.name
        if path.stem in OWN_BUDGET:
            continue
        # the base's budget (a method's own replay options, e.g. task_sampling, may differ)
        budget = {"capacity_per_task", "batch_per_task"} & set(raw.get("replay", {}))
        assert not budget and "train" not in raw, path.name


def test_inherits_merges_parents_in_order_and_keeps_the_childs_name(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nagent: {gamma: 0.5, tau: 0.1}\n")
    (tmp_path / "b.yaml").write_text("agent: {tau: 0.2}\nreplay: {batch_per_task: 7}\n")
    (tmp_path / "c.yaml").write_text("inherits: [a.yaml, b.yaml]\nagent: {gamma: 0.9}\n")
    config = load_config(tmp_path / "c.yaml", ["replay.batch_per_task=9"])
    assert (config.name, config.agent.gamma, config.agent.tau) == ("c", 0.9, 0.2)
    assert config.replay.batch_per_task == 9  # overrides come last
    (tmp_path / "d.yaml").write_text("inherits: mt10\nagent: {gamma: 0.9}\n")  # a preset name
    config = load_config(tmp_path / "d.yaml")
    assert config.env.tasks == "MT10" and config.agent.network.hidden_sizes == [400, 400, 400]


def test_inherits_cycles_and_unknown_parents_are_one_line_errors(tmp_path):
    (tmp_path / "x.yaml").write_text("inherits: y.yaml\n")
    (tmp_path / "y.yaml").write_text("inherits: x.yaml\n")
    with pytest.raises(MtrlError, match="inherits itself"):
        load_config(tmp_path / "x.yaml")
    (tmp_path / "z.yaml").write_text("inherits: nope\n")
    with pytest.raises(MtrlError, match="unknown preset 'nope'"):
        load_config(tmp_path / "z.yaml")
