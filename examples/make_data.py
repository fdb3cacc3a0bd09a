"""Write the small example tables of ``docs/guide.md`` into ``examples/data/`` (deterministic: the same
bytes on every machine, so the files in the repository can be checked against this script).

    python examples/make_data.py            # (re)write the files
    python examples/make_data.py --check    # exit 1 if a file differs from what this script writes

Every table is generated from numbers alone (no download, no third-party data):

- ``flowers.csv``: 150 iris-like flowers (50 per species): four measurements in cm and ``species``
  (text: classification). ``flowers-test.csv``: 30 more, for ``--test-file``. ``new-flowers.csv``: six
  flowers without ``species``, for ``selfexpand predict``.
- ``houses.csv``: 200 houses: ``area_m2``, ``rooms``, ``age_years``, ``distance_km`` and ``price`` in
  thousands (decimals: regression, far from unit scale; trained standardised, reported in thousands).
- ``ratings.csv``: 150 reviews: three scores and ``stars`` 1..5 (few integers: classification by
  default; ``--task regression`` treats the stars as numbers).
- ``zones.csv``: 480 points ``x``, ``y`` on a map and their ``zone`` 1..60 (60 integers: more than
  the 50 the rule takes as classes, so regression by default; ``--task classification`` says what
  it is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "data"

#: per species: mean and spread of sepal length, sepal width, petal length, petal width (cm)
_SPECIES = {
    "setosa": ((5.0, 3.4, 1.5, 0.25), (0.35, 0.38, 0.17, 0.1)),
    "versicolor": ((5.9, 2.8, 4.3, 1.3), (0.5, 0.3, 0.47, 0.2)),
    "virginica": ((6.6, 3.0, 5.55, 2.0), (0.6, 0.32, 0.55, 0.27)),
}
_FLOWER_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _csv(header: list[str], rows: list[list]) -> str:
    return "\n".join([",".join(header)] + [",".join(str(c) for c in row) for row in rows]) + "\n"


def _flowers(rng: np.random.Generator, per_species: int) -> list[list]:
    rows = []
    for name, (mean, spread) in _SPECIES.items():
        values = np.clip(rng.normal(mean, spread, size=(per_species, 4)), 0.1, None)
        rows += [[f"{v:.1f}" for v in row] + [name] for row in values]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def _houses(rng: np.random.Generator, n: int) -> list[list]:
    area = rng.uniform(35, 220, n)
    rooms = np.clip(np.round(area / 30 + rng.normal(0, 0.7, n)), 1, 8).astype(int)
    age = rng.integers(0, 90, n)
    distance = rng.gamma(2.0, 4.0, n)
    price = 90 + 2.6 * area + 12 * rooms - 0.9 * age - 6.5 * distance + 0.004 * area ** 2 + rng.normal(0, 25, n)
    return [[f"{a:.0f}", r, g, f"{d:.1f}", f"{max(p, 40.0):.1f}"] for a, r, g, d, p in
            zip(area, rooms, age, distance, price)]


def _ratings(rng: np.random.Generator, n: int) -> list[list]:
    service, food, price = rng.uniform(0, 10, (3, n))
    score = 0.25 * service + 0.35 * food - 0.12 * price + rng.normal(0, 0.5, n)
    stars = np.clip(np.round(1 + score / 1.2), 1, 5).astype(int)
    return [[f"{s:.1f}", f"{f:.1f}", f"{p:.1f}", k] for s, f, p, k in zip(service, food, price, stars)]


def _zones(rng: np.random.Generator, per_zone: int) -> list[list]:
    rows = []
    for zone in range(1, 61):
        col, row = (zone - 1) % 10, (zone - 1) // 10  # a 10 x 6 grid of zones, each 1 km square
        xs = rng.uniform(col, col + 1, per_zone)
        ys = rng.uniform(row, row + 1, per_zone)
        rows += [[f"{x:.3f}", f"{y:.3f}", zone] for x, y in zip(xs, ys)]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def tables() -> dict[str, str]:
    """File name -> text, each from its own seed."""
    flowers = _flowers(np.random.default_rng(1), 60)
    return {
        "flowers.csv": _csv(_FLOWER_COLUMNS + ["species"], flowers[:150]),
        "flowers-test.csv": _csv(_FLOWER_COLUMNS + ["species"], flowers[150:]),
        "new-flowers.csv": _csv(_FLOWER_COLUMNS, [r[:4] for r in _flowers(np.random.default_rng(2), 2)]),
        "houses.csv": _csv(["area_m2", "rooms", "age_years", "distance_km", "price"],
                           _houses(np.random.default_rng(3), 200)),
        "ratings.csv": _csv(["service", "food", "price", "stars"], _ratings(np.random.default_rng(4), 150)),
        "zones.csv": _csv(["x", "y", "zone"], _zones(np.random.default_rng(5), 8)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = parser.parse_args(argv)
    differ = []
    HERE.mkdir(exist_ok=True)
    for name, text in tables().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                differ.append(name)
        else:
            path.write_text(text)
    if differ:
        print(f"differ from make_data.py: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
