"""scripts/mutants.py (the rerunnable mutation check, a tool outside the suite) cannot rot silently: every
mutant still applies to this checkout (its text occurs exactly once and it changes one line), names are
unique, and the tests each mutant runs exist."""
from __future__ import annotations

import importlib.util
import sys

from conftest import REPO


def _load():
    spec = importlib.util.spec_from_file_location("edge_ad_mutants", REPO / "scripts" / "mutants.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod                     # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_mutant_applies_to_this_checkout():
    mutants = _load()
    problems = {m.name: why for m in mutants.MUTANTS if (why := mutants.check_applies(m))}
    assert not problems, problems
    names = [m.name for m in mutants.MUTANTS]
    assert len(set(names)) == len(names) >= 40
    assert {"runtime", "export", "models"} <= set(mutants.package_links())   # what the copy's imports need
    for m in mutants.MUTANTS:
        files = [t for t in m.tests if t.startswith("tests/")]
        assert files and all((REPO / f).is_file() for f in files), (m.name, m.tests)
        assert m.equivalent is None or len(m.equivalent) > 40, f"{m.name}: say why it cannot be killed"


def test_check_applies_refuses_what_does_not_apply():
    mutants = _load()
    m = mutants.MUTANTS[0]
    assert mutants.check_applies(m) == ""
    assert "occurs 0 times" in mutants.check_applies(mutants.Mutant("x", m.path, "no such text here", "y", m.tests))
    assert "does not exist" in mutants.check_applies(mutants.Mutant("x", "nope.py", "a", "b", m.tests))
    two = mutants.Mutant("x", m.path, m.old, m.new + "\nextra", m.tests)
    assert "exactly one line" in mutants.check_applies(two)
