"""JT/T 808 terminals: codec and TCP gateway into the MQTT wire format."""
