"""lamina's built-in plugins.

Each module registers its classes through the same hooks a third-party package uses;
the core loads them from the one tuple ``lamina.registry.BUILTIN_PLUGINS``. The folder
is ``plugins/`` in the repository and installs as ``lamina.plugins``; a user's own
``plugins`` package is theirs and never shadows this one.
"""

if __name__ != "lamina.plugins":
    raise ImportError(
        f"lamina's built-in plugins were imported as {__name__!r}, the name of their folder "
        "in the repository; import them as 'lamina.plugins' (install the checkout with "
        "pip install -e .)"
    )
