"""Plain values <-> asyncua's wire types (DataValue, Variant, StatusCode, method arguments).

Pure functions over `asyncua.ua`; no I/O, no core import.
"""
