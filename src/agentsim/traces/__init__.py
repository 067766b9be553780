"""Traces: the canonical trace format, importers from public formats, exporters, statistics and fitting."""
