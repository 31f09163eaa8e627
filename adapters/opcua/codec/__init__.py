"""The OPC UA encoding rules of our model: the data types and status each value carries,
method signatures and the checking of a call's arguments. Pure: no core, no asyncua, no I/O
(`model/wire.py` makes asyncua's objects of these at the server edge)."""
