"""The experiments of jsma-jax: the paper's study, LeNet training, attacking a checkpoint.

A thin command-line layer over the library (``jsma-jax reproduce | train | attack``). In
a checkout this folder is the package ``experiments`` (``python -m experiments.commands.reproduce``);
installed, it is ``jsma_jax_experiments``. Modules import each other relatively, so both
names work.
"""
