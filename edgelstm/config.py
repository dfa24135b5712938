"""Numba flags, set in one place (STUMPY style).

``cache=True`` keeps compiled kernels on disk between processes; ``boundscheck=False`` because the loader
validates every artifact before a kernel touches it; ``fastmath=False`` so float kernels stay comparable
with PyTorch and integer kernels keep exact C semantics; ``error_model="numpy"`` avoids Python-style
division checks inside hot loops.
"""

NJIT_OPTS = dict(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")
# Small helpers called from several places are inlined at Numba IR level instead of compiled on their own: each
# separately compiled function costs a compile per distinct argument-type tuple (Numba specializes on literal
# integer arguments, so ``f(x, 0)`` and ``f(x, 1)`` are two compiles), ~0.3 s of CPU each here, minutes on a Pi.
INLINE_OPTS = dict(NJIT_OPTS, inline="always")

