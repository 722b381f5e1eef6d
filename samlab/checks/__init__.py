"""Exercise checks: one function per exercise, telling the student in plain words whether
the answer is right and, if not, what is off, without printing the solution.

One module per notebook (``samlab.checks.nb01`` for notebook 01, ...).
"""

__all__: list[str] = []
