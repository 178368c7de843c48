"""Generated command lines: every one ends with an exit status and a message, in seconds.

The commands run in-process with no dataset reachable and the network closed, so a
``train`` fails at the data lookup rather than training; ``bench`` and ``check`` are
left out (they run for seconds by design, on valid input only).
"""

from __future__ import annotations

import urllib.request

import pytest
from fuzzing import FUZZ, no_hang
from hypothesis import given
from hypothesis import strategies as st

from lamina.cli import main

COMMANDS = ["layers", "summary", "validate", "train", "evaluate", "plot", "trian", ""]
OPTIONS = ["--epochs", "--lr", "--batch-size", "--seed", "--shards", "--limit", "--resume",
           "--run-dir", "--data-dir", "--json", "--out", "--quiet", "--dataset",
           "--strict-plugins", "--nonsense", "-x", "--"]
WORDS = st.one_of(
    st.sampled_from(OPTIONS),
    st.sampled_from(["mnist_cnn", "residual_cnn", "0", "-1", "1e400", "nan", "inf", "2", "64",
                     "65", "1e-3", "99999999999999999999", "mnist", "fashion-mnist", "imagenet",
                     "/dev/zero", "/", "", "x" * 300, "\u00e9", "runs/none"]),
    st.integers(-2**40, 2**40).map(str),
    st.text(max_size=12),
)


@pytest.fixture(autouse=True)
def nowhere(tmp_path, monkeypatch):
    """No dataset anywhere, no network, and a working directory of its own."""
    monkeypatch.delenv("LAMINA_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)

    def closed(*args, **kwargs):
        raise OSError("the network is closed in the fuzz tests")

    monkeypatch.setattr(urllib.request, "urlopen", closed)


@FUZZ
@given(command=st.sampled_from(COMMANDS), words=st.lists(WORDS, max_size=6))
def test_any_command_line_ends_with_a_status_and_a_message(command, words, capsys):
    argv = [command, *words] if command else words
    with no_hang():
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, or a malformed command line
            code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)  # 2: every mistake in the input
    assert "Traceback" not in err, (argv, err)
    if code:
        assert err.strip(), argv  # a failure always says why
