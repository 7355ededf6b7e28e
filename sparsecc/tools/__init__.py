"""The layer users touch: CLI verbs, terminal and HTML reports, the benchmark helpers."""
