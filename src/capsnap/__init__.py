"""capsnap: Linux file capabilities as a declared, verified part of packaging."""

__version__ = "0.1.0"
