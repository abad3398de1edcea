"""The moth's constants (spec: moth-model.md): the S1 body and its environment, and the state order.

Plain Python: the dataset layer reads the state names without JAX. CGS units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

STATE_NAMES = ("x", "xdot", "y", "ydot", "theta", "thetadot", "phi", "phidot")


@dataclass(frozen=True)
class MothParameters:
    """Body and environment constants of the S1 moth at body scale 1 (moth-model.md).

    Hashable: `integrate` compiles once per body it flies.
    """

    b_head: float = 0.5
    a_head: float = 0.9
    b_abd: float = 0.75
    a_abd: float = 1.9
    rho_head: float = 0.9
    rho_abd: float = 0.4
    rho_air: float = 0.00118
    mu_air: float = 0.000186
    L1: float = 0.9
    L2: float = 1.9
    L3: float = 0.75
    K: float = 23000.0
    c: float = 14075.8
    g: float = 980.0
    beta_r: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)
