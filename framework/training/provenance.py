"""A run's ``provenance.json``: where everything it was trained with came from, and the
message for a run used without a plugin it was trained with.

``lamina train`` and :meth:`lamina.Model.save` write it. It is a record for people and
for hints: nothing a run computes is read from it, so a run whose provenance is missing
or damaged still loads (its ``config.json`` and checkpoint decide).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, UnknownPluginError
from ..registry import Registry
from . import runs


def used_plugins(config: Any) -> set[str]:
    """The type names a resolved config uses: its layers, blocks, loss and optimizer."""
    used = {node.type for node in config.nodes} | {use.type for use in config.blocks}
    return used | {config.loss.type, config.optimizer.type}


def provenance(session: Any, registry: Registry, dataset_files: dict[str, Any]) -> dict:
    """The record of a run: versions, the command, each plugin used and its provider (for
    a local plugin, the class, its file and the SHA-256 of its source), the data files
    and how the training step ran."""
    from .. import __version__
    from ..localplugins import source_fingerprint

    used = used_plugins(session.config)
    plugins = {}
    for entry in registry.entries():
        if entry.name not in used:
            continue
        record = {"kind": entry.kind, "provider": entry.provider.dist,
                  "version": entry.provider.version, "module": entry.provider.module}
        if entry.provider.local:
            record |= {"local": True, **source_fingerprint(entry.cls)}
        plugins[entry.name] = record
    return {
        "lamina": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plugins": plugins,
        "data_files": {k: str(v) for k, v in dataset_files.items()},
        "shards": session.step.shards,
        "parallel": session.step.describe(),
        "blas": session.step.blas.path if session.step.blas is not None else None,
    }


def plugin_fingerprint(config: Any, registry: Registry) -> list[tuple]:
    """What the plugins a config uses are, as two processes can compare: name, kind and
    provider of each, and for a local one the SHA-256 of its source."""
    from ..localplugins import source_fingerprint

    used = used_plugins(config)
    return sorted((e.name, e.kind, e.provider.dist, e.provider.version, e.provider.module,
                   source_fingerprint(e.cls)["source_sha256"] if e.provider.local else "")
                  for e in registry.entries() if e.name in used)


def check_same_plugins(config: Any, registry: Registry, comm: Any) -> None:
    """Over MPI, on every rank together: a DistributedError on every rank unless every
    rank runs the same plugins (the same versions, the same local source). Ranks that
    compute with different code would average gradients of different networks."""
    if comm is None:
        return
    from ..runtime.distributed import DistributedError

    seen = comm.gather_all(plugin_fingerprint(config, registry))
    for rank, theirs in enumerate(seen):
        if theirs != seen[0]:
            differ = sorted(set(theirs) ^ set(seen[0]))
            names = sorted({item[0] for item in differ})
            raise DistributedError(
                f"rank {rank} runs other plugin code than rank 0 for {', '.join(names)} "
                f"(rank 0: {[i for i in seen[0] if i[0] in names]}; rank {rank}: "
                f"{[i for i in theirs if i[0] in names]}); every rank needs the same "
                "versions and, for a local plugin, the same source file")


def types_named(document: Any) -> set[str]:
    """Every ``type`` a config document names (its layers, its blocks' layers, loss and
    optimizer), read defensively: a damaged document names what it can."""
    found: set[str] = set()

    def tables(value: Any) -> list:
        return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []

    if not isinstance(document, dict):
        return found
    model = document.get("model")
    layers = tables(model.get("layers")) if isinstance(model, dict) else []
    blocks = document.get("blocks")
    for block in (blocks.values() if isinstance(blocks, dict) else []):
        layers += tables(block.get("layers")) if isinstance(block, dict) else []
    for section, default in (("loss", "softmax_cross_entropy"), ("optimizer", "adam")):
        table = document.get(section, {"type": default})
        layers.append(table if isinstance(table, dict) else {})
    return found | {t["type"] for t in layers if isinstance(t.get("type"), str)}


def check_plugins_loaded(run_dir: Path, registry: Registry, used: set[str]) -> None:
    """Raise UnknownPluginError naming where each plugin of ``used`` (the types the run's
    config names) that ``registry`` lacks came from, as the run's provenance records it:
    the local module to pass again, or the distribution to install. Silent when the run
    records nothing readable about it (the config's own message then says it)."""
    try:
        record = runs.read_json(run_dir / runs.PROVENANCE, "run's provenance")
    except CheckpointError:
        return  # older runs and damaged records: the config's own messages remain
    plugins = record.get("plugins") if isinstance(record, dict) else None
    if not isinstance(plugins, dict):
        return
    skipped = {p.provider.dist for p in registry.problems}
    missing = []
    for name, info in plugins.items():
        if name not in used or not isinstance(info, dict) or info.get("kind") not in (
                "layer", "loss", "optimizer", "block") or not all(
                isinstance(info.get(key, ""), str | bool | type(None))
                for key in ("provider", "version", "module", "class", "file", "local")):
            continue  # not this config's, or a record too damaged to say anything
        if name in registry.table(info["kind"]) or info.get("provider") in skipped:
            continue  # loaded, or failed to load (that failure is the message to read)
        missing.append(_missing(str(name), info))
    if missing:
        shown = runs.shown(run_dir)
        more = f"; and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise UnknownPluginError(f"{shown} was trained with plugins that are not loaded now: "
                                 + "; ".join(missing[:8]) + more
                                 + f". Nothing in {shown} was changed")


def _missing(name: str, info: dict) -> str:
    kind, provider = info["kind"], str(info.get("provider", "?"))
    if not info.get("local"):
        version = info.get("version")
        return (f"the {kind} plugin {name!r} from {provider} {version or ''}".rstrip()
                + f": install it (pip install {provider})")
    where = str(info.get("class") or info.get("module") or provider)
    file = info.get("file")
    file = file if isinstance(file, str) and not file.startswith("<") else None
    cls = where.rsplit(".", 1)[-1] if info.get("class") else provider
    python = f"Model.load(path, plugins=[{cls}]) in Python"
    if provider == "__main__":  # a notebook's or a script's own class
        how = (f"{python}; for the command line, put the class in a .py file and give "
               "-p FILE.py")
    elif file:
        how = f"-p {file} on the command line, or {python}"
    else:
        how = f"-p {provider} on the command line, or {python}"
    return (f"the local {kind} plugin {name!r} ({where}" + (f", in {file}" if file else "")
            + f"): pass it again, with {how}")
