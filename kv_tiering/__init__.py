"""KV block store across HBM, DRAM and NVMe."""
