"""Plotting functions for the notebooks, one module per topic.

Each function takes data (a History, arrays) and an optional matplotlib Axes, draws,
labels its axes and returns the Axes, so it can be tested headless and wrapped by a widget.
"""

__all__: list[str] = []
