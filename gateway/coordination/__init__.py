"""Coordination: every applicable instruction -> one effective control per DER and interval.

Pure functions over the topology and the active instructions; the rules and worked numbers
are in shared/design/coordination.md.
"""
