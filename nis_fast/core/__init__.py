"""The bottom layer: what every other part of nis_fast (and nis_fast.kernels) agrees on.

layout         the network's sizes and flat parameter layout, the one definition
normalization  the paper's unit frame (smallest enclosing sphere -> radius 0.9 at the origin)
files          atomic file writes
precision      the names of matmul precisions and how a training precision maps to a kernel's
adam           Keras' Adam step size
arrays         numpy / torch inputs: which device, raw pointers, the current CUDA stream
quantize       int8 weights (per-output-unit scales) and the rounding used while training for them

Nothing here imports anything else from nis_fast (tests/test_layers.py holds that).
"""

__version__ = "0.1.0"
