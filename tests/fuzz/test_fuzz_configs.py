"""Mutated configs: validate and plan either succeed or raise a LaminaError with a message."""

from __future__ import annotations

import copy
import json

from fuzzing import FUZZ, no_hang
from hypothesis import given
from hypothesis import strategies as st

from lamina.cli import main
from lamina.config import read_config
from lamina.errors import LaminaError
from lamina.plan import make_plan
from lamina.registry import load_registry

REGISTRY = load_registry(load_entry_points=False)
SHIPPED = {name: read_config(name)[0] for name in ("mnist_cnn", "residual_cnn")}

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["same", "valid", "relu", "conv2d", "dense", "adam", "sgd", "input",
                     "cosine", "mnist", "", "x" * 300, "\u00e9\u4e2d\U0001f600"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)


def paths(document, prefix=()):
    """Every (path, value) of a nested document."""
    yield prefix, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for i, value in enumerate(document):
            yield from paths(value, (*prefix, i))


@st.composite
def mutated(draw):
    document = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(1, 4))):
        places = list(paths(document))
        path, _ = draw(st.sampled_from(places))
        if not path:
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap", "duplicate"]))
        key = path[-1]
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(values)
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return document


@FUZZ
@given(document=mutated())
def test_a_mutated_config_is_planned_or_refused_with_a_message(document):
    with no_hang():
        try:
            make_plan(document, REGISTRY)
        except LaminaError as exc:
            assert str(exc).strip()


@FUZZ
@given(document=mutated())
def test_validate_answers_0_or_2_with_no_traceback(document, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("fuzz") / "config.json"
    path.write_text(json.dumps(document, allow_nan=True))
    with no_hang():
        code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code in (0, 2), err
    assert (code == 0) == ("valid" in out)
    assert "Traceback" not in err


TOML = (read_config.__globals__["resources"].files("lamina") / "configs" /
        "mnist_cnn.toml").read_text()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(TOML)), st.integers(0, 8),
                                st.text(max_size=6)), min_size=1, max_size=5))
def test_edited_toml_text_is_read_or_refused_with_a_message(edits, tmp_path_factory):
    text = TOML
    for at, cut, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + cut:]
    path = tmp_path_factory.mktemp("fuzz") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with no_hang():
        try:
            make_plan(path, REGISTRY)
        except LaminaError as exc:
            assert str(exc).strip()
