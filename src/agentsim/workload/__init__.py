"""Workloads: agent profiles and arrivals turned into tasks (DAGs of calls with gaps)."""
