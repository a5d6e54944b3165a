"""What the commands and studies share: command-line pieces, resumable stages, the seeded
sources, statistics, figures and the environment a run records."""
