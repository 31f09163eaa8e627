"""The core: canonical model, store, coordination, bus, platform API. Knows no protocol."""
