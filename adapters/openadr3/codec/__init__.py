"""OpenADR 3 wire models (3.0.1 and 3.1.0) and their validation: pure, no I/O."""
