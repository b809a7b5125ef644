"""SpineTumor engine: find, classify and localize tumors in lumbar spine T2 MRI.

Pure Python; Slicer, Qt, torch and scikit-learn are imported only where needed.
"""

__version__ = "0.1.0"
