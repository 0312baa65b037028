"""kalshi: a Trio recorder for the complete public market data of the Kalshi exchange."""

__all__ = ["__version__"]

__version__ = "0.1.0"
