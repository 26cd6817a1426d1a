"""exitgate.hw: streaming Amaranth components, each with a pure-Python golden model beside it.

Knows only Amaranth and numpy (and exitgate.numerics); never imports quant, compiler or sim.
"""
