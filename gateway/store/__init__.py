"""The store: the truth. Tables, the engine, migrations and typed storage functions."""
