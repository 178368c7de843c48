"""lamina's built-in plugins.

Each module registers its classes through the same hooks a third-party package uses;
the core loads them from the one tuple ``framework.registry.BUILTIN_PLUGINS``.
"""
