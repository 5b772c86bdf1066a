"""nis_fast: weight-encoded neural implicit shapes, fast.

A triangle mesh goes in; out comes a 7553-parameter MLP that has overfit the
mesh's signed distance function (Davies, Nowrouzezahrai & Jacobson, 2020), and
fast decoders turn it back into distances, meshes and images.
"""
from . import io, metrics, sampling
from .collection import fit_collection
from .core import __version__
from .export import export
from .fit import FitConfig, fit, fit_many
from .mesh import Mesh, MeshError, load_mesh
from .mesh_sdf import MeshSDF
from .model import NeuralSDF, load
from .ops.native import backend_info
__all__ = ["backend_info", "export", "load_mesh", "Mesh", "MeshError", "MeshSDF", "NeuralSDF", "load", "FitConfig",
           "fit", "fit_many", "fit_collection", "io", "metrics", "sampling", "__version__"]
