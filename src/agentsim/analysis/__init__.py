"""Tables in, numbers out: costs (dollars and joules per call, task and pool) and the summary metrics."""
