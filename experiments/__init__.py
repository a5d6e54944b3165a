"""The experiments of jsma-jax: the paper's study, LeNet training, attacking a checkpoint.

A thin command-line layer over the library (``jsma-jax reproduce | train | attack | ...``),
grouped by job: :mod:`.cli` dispatches to :mod:`.commands` (one module per subcommand),
which call the study (:mod:`.study`) and the zoos (:mod:`.zoo`) over shared pieces
(:mod:`.common`); :mod:`.scripts` are run with ``python -m``. In a checkout this folder is
the package ``experiments`` (``python -m experiments.commands.reproduce``); installed, it is
``jsma_jax_experiments``. Modules import each other relatively, so both names work.
"""
