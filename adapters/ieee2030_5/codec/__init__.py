"""IEEE 2030.5 wire models and XML (de)serialisation: pure functions, no I/O."""
