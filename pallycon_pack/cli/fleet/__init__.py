"""health, stats: the fleet as an operator checks it."""
