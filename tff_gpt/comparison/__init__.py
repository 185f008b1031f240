"""Algorithm comparisons: several configurations of one task, over learning-rate grids and seeds, reported
side by side.

- `configs`: a configuration (`--name=... --flag=...`, grids of rates) and the comparison flagfile.
- `run`: every grid point of every configuration with each seed, in this process or `parallel_runs` at once.
- `stats`: means, 95% intervals and paired differences over seeds; the best grid point per configuration.
- `report` and `plots`: `report/comparison.{csv,md,png}` and `grid.csv`.
"""

from tff_gpt.comparison.configs import (
  COMPARISON_FLAGS,
  Configuration,
  ConfigurationError,
  grid_configs,
  parse_configuration,
  read_comparison,
)
from tff_gpt.comparison.report import write_report
from tff_gpt.comparison.run import run_comparison

__all__ = [
  "COMPARISON_FLAGS",
  "Configuration",
  "ConfigurationError",
  "grid_configs",
  "parse_configuration",
  "read_comparison",
  "run_comparison",
  "write_report",
]
