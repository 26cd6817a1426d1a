"""exitgate.quant: datasets, the multi-exit model zoo, QAT training, IR export, the integer
reference and threshold calibration.

The IR, reference, datasets and calibration import numpy only; training and `export_ir` import
torch and Brevitas, loaded on first use.
"""

__all__ = ["export_ir"]


def __getattr__(name):
    if name == "export_ir":
        from .export import export_ir
        return export_ir
    raise AttributeError(f"module 'exitgate.quant' has no attribute {name!r}")
