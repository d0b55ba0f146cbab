"""rtml-profile: train, export, analyze, benchmark and report the HW2 models.

Importing the package is cheap: torch, onnxruntime and tensorrt are imported inside the functions that use them.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake the user can fix (bad id, missing file, absent runtime): shown as one sentence, exit code 2."""
