"""The seed methods (CM-GLasso, PMRL, DCMEM) register themselves here as they land."""
