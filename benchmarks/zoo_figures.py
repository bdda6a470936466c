"""Count every registered model's FLOPs, parameters and continual schedule and store them in
``cozoo/zoo_figures.json`` (read by ``cozoo models --table``). Deterministic; rerun after a model changes:

    OMP_NUM_THREADS=1 python benchmarks/zoo_figures.py [NAME ...]
"""

from __future__ import annotations

import sys
import time

from cozoo.factory import list_models
from cozoo.zoo import FIGURES_PATH, count_zoo_figures, load_zoo_figures, write_zoo_figures


def main(names: list[str]) -> None:
    figures = load_zoo_figures() if FIGURES_PATH.exists() else {}
    for name in names or list_models():
        start = time.perf_counter()
        figures[name] = count_zoo_figures(name)
        write_zoo_figures(figures)  # after each model: an interrupted run keeps what it counted
        print(f"{name}: {figures[name]} ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
