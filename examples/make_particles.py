"""Write examples/ee_events.csv: 1000 e+e- -> gamma gamma and 1000 Bhabha (e+e- -> e+e-) events.

Back-to-back pairs of 1.548 GeV/c (half of the J/psi mass) from the origin, the first particle of
each pair uniform in cos(theta) within |cos(theta)| < 0.8 and in phi; enough to exercise the fast
simulation on several particles per event. Run from the repository root:

    python examples/make_particles.py
"""

from pathlib import Path

import numpy as np

P_GEV = 3.0969 / 2
N_EACH = 1000


def main() -> None:
    rng = np.random.default_rng(2026)
    rows = ["event,pdg,px,py,pz"]
    for k in range(2 * N_EACH):
        pdgs = (22, 22) if k < N_EACH else (11, -11)
        ct, phi = rng.uniform(-0.8, 0.8), rng.uniform(-np.pi, np.pi)
        st = np.sqrt(1 - ct**2)
        p = P_GEV * np.array([st * np.cos(phi), st * np.sin(phi), ct])
        for pdg, sign in zip(pdgs, (1, -1)):
            px, py, pz = sign * p
            rows.append(f"{k},{pdg},{px:.6f},{py:.6f},{pz:.6f}")
    out = Path(__file__).with_name("ee_events.csv")
    out.write_text("\n".join(rows) + "\n")
    print(f"wrote {out} ({2 * N_EACH} events)")


if __name__ == "__main__":
    main()
