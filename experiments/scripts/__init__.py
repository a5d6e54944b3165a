"""Studies and maintainer tools run with ``python -m`` (not ``jsma-jax`` subcommands): adversarial training, a tabular data set, shipping a LeNet."""
