"""Compare two sparse-network catalogs array for array (zarr only, no mothray needed).

    python benchmarks/compare_catalogs.py A/catalog.zarr B/catalog.zarr

Exit 0 when every array of either store exists in the other with the same shape, dtype and
values (NaN equal to NaN), and the tables beside them are equal; else 1, listing what differs.
Used to show a refactoring left the pipeline's results unchanged (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import zarr


def arrays(group: zarr.Group, prefix: str = "") -> dict[str, zarr.Array]:
    """Every array below `group`, by path."""
    found = {}
    for name, member in group.members():
        path = f"{prefix}{name}"
        if isinstance(member, zarr.Group):
            found |= arrays(member, f"{path}/")
        else:
            found[path] = member
    return found


def differences(first: str, second: str) -> tuple[list[str], int]:
    """What differs between two catalogs (missing arrays, shapes, dtypes, values, tables), and
    how many arrays the first holds."""
    a, b = arrays(zarr.open_group(first, mode="r")), arrays(zarr.open_group(second, mode="r"))
    found = [f"{path}: only in one" for path in sorted(a.keys() ^ b.keys())]
    for path in sorted(a.keys() & b.keys()):
        x, y = a[path], b[path]
        if (x.shape, x.dtype) != (y.shape, y.dtype):
            found.append(f"{path}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
        elif not np.array_equal(x[...], y[...], equal_nan=x.dtype.kind == "f"):
            found.append(f"{path}: values differ")
    tables = [Path(path).with_suffix(".csv") for path in (first, second)]
    if tables[0].read_text() != tables[1].read_text():
        found.append("catalog.csv: differs")
    return found, len(a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    found, count = differences(args.first, args.second)
    for line in found:
        print(line)
    print(f"{count} arrays compared: {'identical' if not found else f'{len(found)} differ'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
