"""OpenADR 3 VENs: outside parties that obtain a token, register, follow events (poll or
webhook) and report back, each resource driving one shared DER model."""
