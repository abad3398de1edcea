"""mothray: a Ray-driven Monte Carlo pruning study of hawkmoth flight controllers."""

__version__ = "0.1.0"
