"""The package version (a basic: the faces print it without importing the package's top)."""

__version__ = "0.1.0"
