"""exitgate.compiler: IR -> hardware graph -> folding under a board budget -> Verilog + manifest."""
