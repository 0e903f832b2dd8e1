"""The run directory's file names live in ``mtrl.training.rundir`` alone."""

import ast
from pathlib import Path

import mtrl
from mtrl.training import rundir

NAMES = {getattr(rundir, n) for n in dir(rundir) if n.endswith("_FILE")}


def test_no_other_module_spells_a_run_file_name():
    root = Path(mtrl.__file__).parent
    spelled = []
    for path in root.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in NAMES:
                spelled.append(f"{path.relative_to(root)}:{node.lineno} {node.value}")
    assert not spelled, spelled


def test_run_dirs_are_found_by_their_files(tmp_path):
    (tmp_path / "a" / "s0").mkdir(parents=True)
    (tmp_path / "a" / "s0" / rundir.METRICS_FILE).write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / rundir.CONFIG_FILE).write_text("")
    assert rundir.find_run_dirs(tmp_path) == [tmp_path / "a" / "s0"]
    assert rundir.is_run_dir(tmp_path / "b") and not rundir.is_run_dir(tmp_path)
    assert not rundir.has_checkpoint(tmp_path / "b")
