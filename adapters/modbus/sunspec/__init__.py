"""SunSpec on a Modbus device: discovery, curve adoption, settings as curves, the pool."""
