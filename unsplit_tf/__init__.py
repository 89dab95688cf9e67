"""unsplit-tf: measure how much a split-learning deployment leaks.

Model inversion, model stealing and label inference attacks (UnSplit,
Erdogan et al., WPES 2022) for Keras functional models.
"""

__version__ = "0.1.0"
