"""Studies and maintainer tools run with ``python -m`` rather than as ``jsma-jax`` subcommands:
adversarial training, JSMA on a table, shipping a trained LeNet into the package."""
