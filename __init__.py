"""exitgate: early-exit CNNs from Brevitas quantisation-aware training to bit-exact,
verified FPGA hardware on an open toolchain.

Subpackages: quant (training, IR export, integer reference, calibration), compiler, hw, sim, boards.
"""

from .errors import ExitgateError

__version__ = "0.1.0"
__all__ = ["ExitgateError", "__version__"]
