"""The op layer: one thin wrapper per native op, each beside its kernel's name, its plain twin in
tests/reference.py and its test (the module docstrings name all three).

native         loads nis_fast._C, says what was built and what runs here (backend_info)
triangle       closest point on triangles
mesh_query     BVH queries: closest point and signed distance, winding number, ray hits
mlp            the network: native evaluation, the torch forward, the torch training step
marching_cubes the three native marching-cubes passes
render         sphere tracing

Imports only nis_fast.core (and the native module); the application modules sit on top.
"""
