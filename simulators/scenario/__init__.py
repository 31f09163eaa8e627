"""Scenarios: a TOML file describes a topology, a simulated fleet on a feeder and a timeline
of platform instructions; the runner plays it against a gateway and reports what happened."""
