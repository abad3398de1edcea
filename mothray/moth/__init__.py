"""The physics layer: the simulated hawkmoth (spec: moth-model.md), its sampling and integrator.

State order everywhere: (x, ẋ, y, ẏ, θ, θ̇, φ, φ̇); controls (F, α, τ); CGS units. Imports
numpy and jax only. The constants and the sampling are plain numpy and load at once; the
JAX parts (dynamics, Rosenbrock method, integrator) load on first use, so that the layers
above can name states and ranges without starting JAX.
"""

from __future__ import annotations

from mothray import lazy
from mothray.moth.parameters import STATE_NAMES, MothParameters
from mothray.moth.sampling import SamplingRanges, sample

# public names of the JAX modules, loaded by __getattr__ when first asked for
_LAZY = {
    "integrate": "integrator",
    "Body": "dynamics",
    "body_constants": "dynamics",
    "controls_terms": "dynamics",
    "drag_coefficient": "dynamics",
    "accelerations": "dynamics",
    "acceleration_jacobian": "dynamics",
    "sincos": "dynamics",
    "RODAS5P": "rosenbrock",
    "rosenbrock_step": "rosenbrock",
}

__all__ = ["STATE_NAMES", "MothParameters", "SamplingRanges", "sample", *_LAZY]

__getattr__ = lazy.attributes(__name__, _LAZY)
