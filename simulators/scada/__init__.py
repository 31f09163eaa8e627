"""A simulated LDC SCADA operator: an OPC UA client that watches DERs and issues limits."""
