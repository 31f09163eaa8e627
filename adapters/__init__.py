"""Protocol adapters, one package per protocol, found through entry points."""
