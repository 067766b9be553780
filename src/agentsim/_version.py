"""The package version, in a module of its own: modules that record it (run manifests, sweep definitions) import
it from here rather than from the package, whose ``__init__`` imports them (an import cycle)."""

__version__ = "0.1.0"
