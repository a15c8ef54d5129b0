"""The machine a result was measured on: host facts, the MLPerf-style system description, NVML, stability probes."""
