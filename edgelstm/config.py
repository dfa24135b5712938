"""Numba flags, set in one place (STUMPY style).

``cache=True`` keeps compiled kernels on disk between processes; ``boundscheck=False`` because the loader
validates every artifact before a kernel touches it; ``fastmath=False`` so float kernels stay comparable
with PyTorch and integer kernels keep exact C semantics; ``error_model="numpy"`` avoids Python-style
division checks inside hot loops.
"""

NJIT_OPTS = dict(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
