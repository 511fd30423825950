"""Bad model files fail at load, naming the file, the field and what is wrong."""

from __future__ import annotations

import pytest

from funnel.config import ModelError, default_model_text, load_model, parse_model

DEFAULT = default_model_text()


def test_the_packaged_default_model_loads():
    m = load_model()
    assert m.name == "default" and m.version == "1" and m.lifecycle.policy == "auto"


CASES = [
    ("unknown key", ("policy: auto", "policy: auto\n  polcy: x"), "lifecycle.polcy: Extra inputs"),
    ("wrong type", ("cap: 150", "cap: lots"), "interest.cap: Input should be a valid number"),
    ("bands upside down", ("bands: {hot: 60, warm: 25}", "bands: {hot: 20, warm: 25}"),
     "hot (20.0) must be above warm (25.0)"),
    ("impossible range", ("duration_seconds: {gte: 300}", "duration_seconds: {gte: 300, lt: 100}"),
     "impossible range"),
    ("unknown policy", ("policy: auto", "policy: yolo"), "lifecycle.policy: Input should be"),
    ("mql bar above the cap", ("min_interest: 25", "min_interest: 500"), "above interest.cap"),
    ("signal nobody gives", ("signals: [sales_ready]\n  customer", "signals: [nope]\n  customer"),
     "lifecycle.sql.signals: signal(s) nope"),
    ("duplicate rule id", ("id: page-view", "id: pricing-page"), "repeated: pricing-page"),
    ("hysteresis too wide", ("hysteresis: 5 ", "hysteresis: 30 "),
     "interest: hysteresis (30.0) must be below 25.0"),
    ("half a window limit", ("window_days: 7}", "window_days: null}"),
     "max_in_window and window_days go together"),
    ("not yaml", ("name: default", "name: [default"), "not valid YAML"),
]


@pytest.mark.parametrize("what,edit,expected", CASES, ids=[c[0] for c in CASES])
def test_invalid_model_file_is_refused_with_a_precise_message(tmp_path, what, edit, expected):
    old, new = edit
    assert old in DEFAULT, f"test edit does not apply: {old!r}"
    path = tmp_path / "model.yaml"
    path.write_text(DEFAULT.replace(old, new, 1))
    with pytest.raises(ModelError) as exc:
        load_model(path)
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_a_missing_file_is_named():
    with pytest.raises(ModelError, match="nope.yaml: cannot read"):
        load_model("nope.yaml")


def test_the_version_is_carried_as_text():
    assert parse_model(DEFAULT.replace('version: "1"', "version: 3")).version == "3"
