"""Where a plugin came from, as lamina reports it in messages, tables and provenance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provider:
    """Where a plugin came from: distribution, version and module (or entry point). A
    ``local`` plugin was handed to lamina directly (:mod:`lamina.localplugins`): its
    ``dist`` is the module that defines it and ``module`` the class (or module) given."""

    dist: str
    version: str
    module: str
    local: bool = False

    def __str__(self) -> str:
        return f"{self.dist} (local)" if self.local else f"{self.dist} {self.version}"
