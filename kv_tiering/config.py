"""The tiers' settings, checked once; sizes are bytes (the engine's flags parse
`--kv-dram-size 8GiB` with the same parser as `--kv-cache-memory`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class Tier(enum.Enum):
    DRAM = "dram"
    NVME = "nvme"


@dataclass(frozen=True, slots=True)
class TierConfig:
    dram_bytes: int
    nvme_bytes: int = 0
    nvme_path: Path | None = None
    direct_io: bool = True  # where the filesystem allows it; False: through the page cache
    io_threads: int = 4  # parallel NVMe reads (and the queue depth they give the disk)
    # Write-through backlog before blocks are dropped; queued blocks hold their DRAM slots,
    # so at most half the DRAM tier is ever held by it.
    write_queue_bytes: int = 1 << 30
    write_bytes_per_s: float = 512 * 2**20  # write-through rate cap, leaving the disk to reads

    def __post_init__(self) -> None:
        """Raises ValueError naming the flag that is wrong."""
        if self.dram_bytes < 0 or self.nvme_bytes < 0:
            raise ValueError("--kv-dram-size and --kv-nvme-size must be >= 0")
        if self.nvme_bytes and self.nvme_path is None:
            raise ValueError("--kv-nvme-size needs --kv-nvme-path (a local directory)")
        if self.nvme_bytes and not self.dram_bytes:
            raise ValueError("--kv-nvme-size needs --kv-dram-size: NVMe transfers go through DRAM")
        if self.io_threads < 1 or self.write_queue_bytes < 1 or self.write_bytes_per_s <= 0:
            raise ValueError(
                "io_threads, write_queue_bytes and write_bytes_per_s must be positive, got "
                f"{self.io_threads}, {self.write_queue_bytes}, {self.write_bytes_per_s}"
            )

    @property
    def enabled(self) -> bool:
        return self.dram_bytes > 0
