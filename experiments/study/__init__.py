"""The paper's study (``jsma-jax reproduce``): configuration, inputs, the attack stages, the study, the report."""
