"""Simulated outside parties: DER clients, VENs, inverters, an LDC operator, a feeder."""
