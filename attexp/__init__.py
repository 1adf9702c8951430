"""attexp: a config-driven experiment runner for explaining transformer text classifiers."""

__version__ = "0.1.0"
