import dataclasses
import io
import urllib.request

import pytest

from lamina import DataError
from lamina.data import download_dir, fetch, load_dataset, search_dirs

ALL = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def leftovers(directory):
    """Every name in ``directory`` that is not one of the four finished files."""
    return sorted(p.name for p in directory.iterdir() if p.name not in ALL)


def offline(toy, *mirrors):
    return dataclasses.replace(toy.spec, mirrors=tuple(mirrors))


# --- where lamina looks ------------------------------------------------------------


def test_search_order_is_data_dir_env_cache_system(tmp_path, monkeypatch, sandbox):
    monkeypatch.setenv("LAMINA_DATA", str(tmp_path / "env"))
    dirs = [place.directory for place in search_dirs("mnist", tmp_path / "cli")]
    assert dirs == [
        tmp_path / "cli" / "mnist",
        tmp_path / "env" / "mnist",
        sandbox / ".cache" / "lamina" / "mnist",
        tmp_path / "system" / "mnist",
    ]


@pytest.mark.parametrize("env", [None, ""], ids=["unset", "empty"])
def test_unset_or_empty_env_is_skipped(monkeypatch, sandbox, env):
    if env is not None:
        monkeypatch.setenv("LAMINA_DATA", env)
    origins = [place.origin for place in search_dirs("mnist")]
    assert origins == ["user cache", "system datasets"]
    assert download_dir("mnist") == sandbox / ".cache" / "lamina" / "mnist"


def test_home_is_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert download_dir("x") == tmp_path / "elsewhere" / ".cache" / "lamina" / "x"


def test_data_dir_beats_env(toy, tmp_path, monkeypatch):
    toy.install(tmp_path / "cli" / "toy")
    toy.install(tmp_path / "env" / "toy")
    monkeypatch.setenv("LAMINA_DATA", str(tmp_path / "env"))
    files = fetch(offline(toy), data_dir=tmp_path / "cli", download=False)
    assert {path.parent for path in files.values()} == {tmp_path / "cli" / "toy"}


def test_env_beats_cache_and_cache_beats_system(toy, tmp_path, monkeypatch, sandbox):
    toy.install(sandbox / ".cache" / "lamina" / "toy")
    toy.install(tmp_path / "system" / "toy")
    assert fetch(offline(toy), download=False)["train_images"].parent == (
        sandbox / ".cache" / "lamina" / "toy"
    )
    toy.install(tmp_path / "env" / "toy")
    monkeypatch.setenv("LAMINA_DATA", str(tmp_path / "env"))
    assert fetch(offline(toy), download=False)["train_images"].parent == tmp_path / "env" / "toy"


def test_system_datasets_are_the_last_resort(toy, tmp_path):
    toy.install(tmp_path / "system" / "toy")
    files = fetch(offline(toy), download=False)
    assert files["test_labels"] == tmp_path / "system" / "toy" / "t10k-labels-idx1-ubyte.gz"


def test_each_file_is_looked_up_on_its_own(toy, tmp_path, sandbox):
    toy.install(tmp_path / "cli" / "toy", ALL[:2])
    toy.install(sandbox / ".cache" / "lamina" / "toy", ALL[2:])
    files = fetch(offline(toy), data_dir=tmp_path / "cli", download=False)
    assert files["train_labels"].parent == tmp_path / "cli" / "toy"
    assert files["test_images"].parent == sandbox / ".cache" / "lamina" / "toy"


def test_unpacked_copy_is_used_when_no_gz_and_gz_preferred(toy, tmp_path):
    directory = tmp_path / "cli" / "toy"
    toy.install(directory, ALL[1:])
    (directory / "train-images-idx3-ubyte").write_bytes(b"unchecked here, read later")
    files = fetch(offline(toy), data_dir=tmp_path / "cli", download=False)
    assert files["train_images"] == directory / "train-images-idx3-ubyte"

    toy.install(directory, ALL[:1])
    files = fetch(offline(toy), data_dir=tmp_path / "cli", download=False)
    assert files["train_images"] == directory / ALL[0]


def test_a_damaged_file_found_first_is_an_error_not_skipped(toy, tmp_path, sandbox):
    """Lookup takes the first copy; reading it finds the damage and names the file, and a
    good copy further down is not silently used instead."""
    bad = toy.install(tmp_path / "cli" / "toy") / ALL[2]
    bad.write_bytes(toy.blobs[ALL[2]][:-1])
    toy.install(sandbox / ".cache" / "lamina" / "toy")  # a good copy further down
    assert fetch(offline(toy), data_dir=tmp_path / "cli", download=False)["test_images"] == bad
    with pytest.raises(DataError) as info:
        load_dataset(offline(toy), data_dir=tmp_path / "cli", download=False)
    message = str(info.value)
    assert str(bad) in message and "corrupt gzip stream" in message
    assert "delete it" in message


def test_missing_files_without_download_list_every_place(toy, tmp_path, monkeypatch, sandbox):
    monkeypatch.setenv("LAMINA_DATA", str(tmp_path / "env"))
    toy.install(tmp_path / "env" / "toy", ALL[:3])
    with pytest.raises(DataError) as info:
        fetch(toy.spec, data_dir=tmp_path / "cli", download=False)
    message = str(info.value)
    assert "cannot find t10k-labels-idx1-ubyte.gz." in message
    for directory in [tmp_path / "cli", tmp_path / "env", sandbox / ".cache/lamina"]:
        assert str(directory / "toy") in message
    assert str(tmp_path / "system" / "toy") in message
    assert "Downloading is turned off" in message
    assert "--data-dir" in message and "LAMINA_DATA" in message
    assert not (tmp_path / "cli").exists()  # looking creates nothing


def test_pointing_data_dir_at_the_dataset_folder_gets_a_hint(toy, tmp_path):
    toy.install(tmp_path / "toyfiles")
    with pytest.raises(DataError, match="holds the files directly"):
        fetch(offline(toy), data_dir=tmp_path / "toyfiles", download=False)


# --- downloading -------------------------------------------------------------------


def test_download_goes_to_the_cache_and_is_verified(toy, sandbox):
    messages = []
    files = fetch(toy.spec, report=messages.append)
    cache = sandbox / ".cache" / "lamina" / "toy"
    for name in ALL:
        assert (cache / name).read_bytes() == toy.blobs[name]
    assert files["train_images"] == cache / ALL[0]
    assert leftovers(cache) == []
    assert len(messages) == 4 and toy.source.as_uri() in messages[0]
    # Second call finds everything and downloads nothing.
    messages.clear()
    fetch(offline(toy), report=messages.append)
    assert messages == []


def test_download_goes_to_data_dir_then_env(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_DATA", str(tmp_path / "env"))
    fetch(toy.spec, data_dir=tmp_path / "cli")
    assert sorted(p.name for p in (tmp_path / "cli" / "toy").iterdir()) == sorted(ALL)
    assert not (tmp_path / "env").exists()
    fetch(toy.spec)  # the env dir is searched next: nothing there yet, so it downloads
    assert sorted(p.name for p in (tmp_path / "env" / "toy").iterdir()) == sorted(ALL)


def test_only_missing_files_are_downloaded(toy, sandbox):
    cache = toy.install(sandbox / ".cache" / "lamina" / "toy", ALL[:3])
    messages = []
    fetch(toy.spec, report=messages.append)
    assert len(messages) == 1 and ALL[3] in messages[0]
    assert (cache / ALL[3]).read_bytes() == toy.blobs[ALL[3]]


def test_checksum_failure_leaves_no_file(toy, sandbox):
    (toy.source / ALL[0]).write_bytes(toy.blobs[ALL[0]] + b"tampered")
    with pytest.raises(DataError) as info:
        fetch(toy.spec)
    message = str(info.value)
    assert f"{toy.source.as_uri()}/{ALL[0]}: MD5 checksum mismatch" in message
    assert f"expected {toy.spec.md5[ALL[0]]}" in message
    cache = sandbox / ".cache" / "lamina" / "toy"
    assert not (cache / ALL[0]).exists()
    assert leftovers(cache) == []


def test_first_mirror_failing_then_second_succeeding(toy, tmp_path, sandbox):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ALL[0]).write_bytes(b"not the file")
    spec = offline(toy, (tmp_path / "gone").as_uri(), broken.as_uri(), toy.source.as_uri())
    messages = []
    fetch(spec, report=messages.append)
    cache = sandbox / ".cache" / "lamina" / "toy"
    assert (cache / ALL[0]).read_bytes() == toy.blobs[ALL[0]]
    assert leftovers(cache) == []
    assert [m.split(" ")[1] for m in messages[:3]] == [
        f"{(tmp_path / 'gone').as_uri()}/{ALL[0]}",
        f"{broken.as_uri()}/{ALL[0]}",
        f"{toy.source.as_uri()}/{ALL[0]}",
    ]


def test_offline_failure_lists_places_and_every_url(toy, tmp_path, sandbox):
    spec = offline(toy, (tmp_path / "m1").as_uri(), (tmp_path / "m2").as_uri())
    with pytest.raises(DataError) as info:
        fetch(spec, data_dir=tmp_path / "cli")
    message = str(info.value)
    assert f"Could not download {ALL[0]}:" in message
    assert f"{(tmp_path / 'm1').as_uri()}/{ALL[0]}: " in message
    assert f"{(tmp_path / 'm2').as_uri()}/{ALL[0]}: " in message
    for place in search_dirs("toy", tmp_path / "cli"):
        assert str(place.directory) in message
    assert "internet connection" in message
    assert leftovers(tmp_path / "cli" / "toy") == []


def test_unwritable_download_dir_is_reported(toy, tmp_path):
    (tmp_path / "file").write_text("a file where a directory should be")
    with pytest.raises(DataError, match="cannot create the download directory"):
        fetch(toy.spec, data_dir=tmp_path / "file")


class _DropsAfterOneChunk(io.RawIOBase):
    """A response that sends one chunk and then fails like a dropped connection."""

    def __init__(self, error):
        self.error, self.sent = error, False

    def read(self, size=-1):
        if self.sent:
            raise self.error
        self.sent = True
        return b"\x1f\x8b partial"


@pytest.mark.parametrize(
    "error",
    [ConnectionResetError("reset by peer"), KeyboardInterrupt()],
    ids=["connection-reset", "ctrl-c"],
)
def test_interrupted_download_leaves_no_partial_file(toy, sandbox, monkeypatch, error):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _DropsAfterOneChunk(error))
    expected = DataError if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected):
        fetch(toy.spec)
    cache = sandbox / ".cache" / "lamina" / "toy"
    assert list(cache.iterdir()) == []
