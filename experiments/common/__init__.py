"""What the commands and studies share: command-line pieces, resumable stages, sources, statistics, figures, environment records."""
