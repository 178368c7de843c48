"""The README's "A short tour" runs as written: each ``$ `` line is run in order, in a
folder laid out as a clone's root, and exits as its comment says."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# what the tour itself writes; every other path it names is a file of the repository
OUTPUTS = "runs/"


def tour_lines() -> list[str]:
    """The ``$ `` lines of the console block under "## A short tour", without the ``$ ``."""
    text = (ROOT / "README.md").read_text()
    assert "\n## A short tour\n" in text, "README.md has no section '## A short tour'"
    section = text.split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block, "README.md's tour has no ```console block"
    return [line[2:] for line in block.group(1).splitlines() if line.startswith("$ ")]


def command_and_comment(line: str) -> tuple[str, str]:
    command, _, comment = line.partition(" #")
    return command.strip(), comment.strip()


def expected_exit(line: str) -> int:
    """2 for the line whose comment says so (validating the broken config), else 0."""
    return 2 if command_and_comment(line)[1].startswith("exit 2") else 0


def named_paths(command: str) -> list[str]:
    """The arguments of a command that are paths: a slash, or a file's suffix."""
    return [word for word in shlex.split(command)
            if "/" in word or re.search(r"\.(toml|json|png|jpe?g|npy|onnx)$", word)]


def missing_extra(line: str) -> str | None:
    """Why this line cannot run here: a package of an extra its comment names is not
    installed, or its program is not on PATH; None when it can run."""
    for extra in re.findall(r'lamina\[(\w+)\]', command_and_comment(line)[1]):
        for spec in importlib.metadata.requires("lamina") or []:
            requirement = Requirement(spec)
            if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
                continue
            try:
                importlib.metadata.distribution(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                return f"needs {requirement.name} (pip install \"lamina[{extra}]\")"
    program = shlex.split(line)[0]
    if shutil.which(program, path=_path()) is None:
        return f"{program} is not on PATH"
    return None


def _path() -> str:
    # the console scripts (lamina, and mpiexec from the mpich wheel) sit next to the
    # interpreter, also when the environment is not activated
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


LINES = tour_lines()


def test_the_tour_is_pastable_and_names_only_shipped_files():
    assert len(LINES) >= 10, f"README.md's tour has only {len(LINES)} lines"
    extras = set(importlib.metadata.metadata("lamina").get_all("Provides-Extra") or [])
    for line in LINES:
        command, comment = command_and_comment(line)
        assert not re.search(r"[\[\]<>|]|\.\.\.", command), \
            f"a usage bracket or placeholder cannot be pasted: {line!r}"
        for path in named_paths(command):
            assert path.startswith(OUTPUTS) or (ROOT / path).is_file(), \
                f"the tour names {path}, which the repository does not ship: {line!r}"
        for extra in re.findall(r'lamina\[(\w+)\]', comment):
            assert extra in extras, f"the tour names an extra lamina lacks: {line!r}"
    assert [expected_exit(line) for line in LINES].count(2) == 1, \
        "exactly one line (validating docs/examples/broken_net.toml) is expected to exit 2"


class Tour:
    """Runs the tour's lines in order, each once, in a folder holding the shipped files
    the tour names at their paths in the repository."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.results: list[subprocess.CompletedProcess | str] = []
        for line in LINES:
            for path in named_paths(command_and_comment(line)[0]):
                if not path.startswith(OUTPUTS) and (ROOT / path).is_file():
                    (folder / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(ROOT / path, folder / path)

    def run_through(self, index: int, data_root: str) -> None:
        """Run every line up to ``index`` not yet run, in order; a line whose extra is
        missing gets the reason instead of a result."""
        env = {**os.environ, "LAMINA_DATA": data_root, "PATH": _path()}
        while len(self.results) <= index:
            line = LINES[len(self.results)]
            reason = missing_extra(line)
            self.results.append(reason or subprocess.run(
                line, shell=True, cwd=self.folder, env=env, capture_output=True, text=True,
                timeout=300))


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Tour:
    return Tour(tmp_path_factory.mktemp("clone"))


@pytest.mark.parametrize("index", range(len(LINES)),
                         ids=[command_and_comment(line)[0] for line in LINES])
def test_tour_line(index: int, tour: Tour, mnist_root: str):
    line = LINES[index]
    tour.run_through(index, mnist_root)
    result = tour.results[index]
    if isinstance(result, str):
        pytest.skip(f"{result}: $ {line}")
    earlier = zip(LINES[:index], tour.results[:index], strict=True)
    failed_before = [f"$ {before}" for before, outcome in earlier
                     if isinstance(outcome, subprocess.CompletedProcess)
                     and outcome.returncode != expected_exit(before)]
    assert result.returncode == expected_exit(line), (
        f"$ {line}\nexited {result.returncode}, expected {expected_exit(line)}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        + "".join(f"\n(an earlier line failed too: {before})" for before in failed_before))
