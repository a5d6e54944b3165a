"""One module per ``jsma-jax`` subcommand: its parser, its ``--help`` and ``main(argv)``.

:mod:`..cli` imports a command's module only when that command runs. A command module
imports the shared pieces (:mod:`..common`) and the work it calls (:mod:`..study`,
:mod:`..zoo`), never another command module.
"""
