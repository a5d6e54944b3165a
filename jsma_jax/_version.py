"""The installed package's version, read once from its metadata (pyproject.toml is its one home)."""

from importlib import metadata

try:
  __version__ = metadata.version("jsma-jax")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
  __version__ = "0+unknown"
