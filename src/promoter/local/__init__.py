"""Local backends: the embedded default that runs a whole promotion on one machine, no cluster."""
