"""samlab: why Sharpness-Aware Minimization resists label noise, and what cheaper methods recover.

The library behind the notebooks in ``notebooks/``. One concept per module:

* :mod:`samlab.data`, :mod:`samlab.noise`: datasets as tensors, label noise with its own seed;
* :mod:`samlab.models`: classifiers exposing ``features(x)`` and ``head``;
* :mod:`samlab.methods`: SGD, SAM and its variants behind one ``step`` interface;
* :mod:`samlab.train`: the one training loop, ``fit``;
* :mod:`samlab.profiles`: run sizes (``smoke``, ``cpu``, ``gpu``).
"""

from samlab import data, losses, methods, models, noise, profiles, train
from samlab.data import load
from samlab.train import FitConfig, History, fit

__all__ = ["FitConfig", "History", "data", "fit", "load", "losses", "methods", "models", "noise", "profiles", "train"]
__version__ = "0.1.0"
