"""The reference set the vector tests read is there and whole (a missing or empty folder fails, never skips)."""
from __future__ import annotations

from refvectors import case_meta, case_names, layout_names, require_reference


def test_reference_folder_has_cases_and_layouts():
    require_reference()
    assert case_names() and layout_names()


def test_every_case_names_a_model_with_a_layout_and_a_fill_rule():
    """Each vector's model has its key layout and the fill rule its weights were drawn with."""
    root = require_reference()
    layouts = set(layout_names())
    for case in case_names():
        model = case_meta(case).get("model")
        assert model in layouts, f"vectors/{case}: its model {model!r} has no layouts/{model}.txt"
        assert (root / "layouts" / f"{model}.fill.json").is_file(), f"no fill rule for {model}"
