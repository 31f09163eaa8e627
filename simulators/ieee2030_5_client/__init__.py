"""IEEE 2030.5 device and aggregator clients: outside parties that speak 2030.5 XML over
mutual TLS to the gateway and drive the shared DER model with what they are told."""
