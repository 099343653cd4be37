"""Marching-cubes triangle table of the classic Lorensen-Cline / Bourke formulation (public domain,
P. Bourke, "Polygonising a scalar field", 1994), configurations 0-127: the half table PyRadiomics's
mesh uses (a configuration >= 128 is its complement, with the triangles' orientation reversed).

Corner ``k`` of a cube is bit ``k`` of its configuration, at (z, y, x) offset :data:`CORNERS` ``[k]``;
a triangle's vertices are edge midpoints, numbered as in :data:`EDGE_MIDPOINTS` ((z, y, x) voxel
offsets from the cube's first corner). ``TRIANGLES[c]`` lists the edges of each triangle of
configuration ``c``, three per triangle. Checked against PyRadiomics's mesh volumes and surface areas
by ``tests/test_pyradiomics_compat.py``.
"""

from __future__ import annotations

__all__ = ["CORNERS", "EDGE_MIDPOINTS", "TRIANGLES"]

CORNERS = ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0))

EDGE_MIDPOINTS = ((0, 0, 0.5), (0, 0.5, 1), (0, 1, 0.5), (0, 0.5, 0),
                  (1, 0, 0.5), (1, 0.5, 1), (1, 1, 0.5), (1, 0.5, 0),
                  (0.5, 0, 0), (0.5, 0, 1), (0.5, 1, 1), (0.5, 1, 0))

_ROWS = """\

0 8 3
1 9 0
1 8 3 1 9 8
1 2 10
0 8 3 1 2 10
9 2 10 0 2 9
2 8 3 2 10 8 10 9 8
11 2 3
11 2 0 0 8 11
1 9 0 11 2 3
11 2 1 1 9 11 9 8 11
3 10 1 11 10 3
10 1 0 0 8 10 8 11 10
9 0 3 3 11 9 11 10 9
9 8 10 11 10 8
4 7 8
0 4 3 4 7 3
1 9 0 4 7 8
1 9 4 1 4 7 1 7 3
1 2 10 4 7 8
3 4 7 3 0 4 1 2 10
9 2 10 9 0 2 4 7 8
2 10 9 2 9 7 2 7 3 4 7 9
4 7 8 11 2 3
11 4 7 11 2 4 2 0 4
1 9 0 4 7 8 11 2 3
4 7 11 9 4 11 11 2 9 1 9 2
3 10 1 11 10 3 4 7 8
11 10 1 1 4 11 1 0 4 4 7 11
4 7 8 9 0 3 3 11 9 11 10 9
4 7 11 4 11 9 9 11 10
9 5 4
9 5 4 0 8 3
0 5 4 0 1 5
8 5 4 8 3 5 3 1 5
1 2 10 9 5 4
0 8 3 1 2 10 9 5 4
2 10 5 5 4 2 2 4 0
2 10 5 3 2 5 3 5 4 8 3 4
9 5 4 11 2 3
11 2 0 0 8 11 9 5 4
0 5 4 0 1 5 11 2 3
2 1 5 2 5 8 11 2 8 5 4 8
3 10 1 11 10 3 9 5 4
5 4 9 10 1 0 0 8 10 8 11 10
5 4 0 5 0 11 10 5 11 11 0 3
5 4 8 10 5 8 11 10 8
7 8 9 5 7 9
3 0 9 5 3 9 3 5 7
7 8 0 0 1 7 7 1 5
1 5 7 1 7 3
7 8 9 5 7 9 1 2 10
1 2 10 3 0 9 3 9 5 3 5 7
0 2 8 8 2 5 8 5 7 2 10 5
2 10 5 2 5 3 3 5 7
5 7 9 7 8 9 11 2 3
5 7 9 9 7 2 2 0 9 11 2 7
11 2 3 0 1 8 1 7 8 1 5 7
2 1 11 1 7 11 1 5 7
7 8 9 5 7 9 3 10 1 11 10 3
5 7 0 5 0 9 7 11 0 10 1 0 11 10 0
11 10 0 0 3 11 10 5 0 0 7 8 5 7 0
11 10 5 5 7 11
6 5 10
0 8 3 6 5 10
1 9 0 6 5 10
1 8 3 1 9 8 6 5 10
1 6 5 1 2 6
1 6 5 1 2 6 0 8 3
9 6 5 9 0 6 0 2 6
5 9 8 5 8 2 5 2 6 8 3 2
11 2 3 6 5 10
11 2 0 0 8 11 6 5 10
1 9 0 11 2 3 6 5 10
11 2 1 1 9 11 9 8 11 6 5 10
6 3 11 6 5 3 5 1 3
0 8 11 0 11 5 0 5 1 5 11 6
6 3 11 0 3 6 0 6 5 0 5 9
6 5 9 6 9 11 11 9 8
4 7 8 6 5 10
0 4 3 4 7 3 6 5 10
1 9 0 4 7 8 6 5 10
1 9 4 1 4 7 1 7 3 6 5 10
4 7 8 1 6 5 1 2 6
0 4 3 4 7 3 1 6 5 1 2 6
4 7 8 9 6 5 9 0 6 0 2 6
7 3 9 4 7 9 3 2 9 5 9 6 2 6 9
11 2 3 4 7 8 6 5 10
11 4 7 11 2 4 2 0 4 6 5 10
1 9 0 11 2 3 4 7 8 6 5 10
4 7 11 9 4 11 11 2 9 1 9 2 6 5 10
4 7 8 6 3 11 6 5 3 5 1 3
5 1 11 5 11 6 1 0 11 4 7 11 0 4 11
4 7 8 6 3 11 0 3 6 0 6 5 0 5 9
6 5 9 6 9 11 4 7 9 7 11 9
10 4 9 6 4 10
10 4 9 6 4 10 0 8 3
0 1 10 10 6 0 6 4 0
1 8 3 1 6 8 8 6 4 6 1 10
1 4 9 1 2 4 2 6 4
1 4 9 1 2 4 2 6 4 0 8 3
0 2 4 4 2 6
8 3 2 8 2 4 4 2 6
11 2 3 10 4 9 6 4 10
11 2 0 0 8 11 10 4 9 6 4 10
11 2 3 0 1 10 10 6 0 6 4 0
6 4 1 6 1 10 1 4 8 11 2 1 1 8 11
9 6 4 3 6 9 1 3 9 11 6 3
1 8 11 0 8 1 11 6 1 1 4 9 6 4 1
6 3 11 0 3 6 6 4 0
8 6 4 6 8 11
6 7 10 7 8 10 8 9 10
6 7 10 0 10 7 0 9 10 0 7 3
6 7 10 1 10 7 1 7 8 0 1 8
6 7 10 1 10 7 1 7 3
1 2 6 1 6 8 1 8 9 6 7 8
2 6 9 1 2 9 6 7 9 3 0 9 7 3 9
0 7 8 7 0 6 6 0 2
2 7 3 2 6 7
11 2 3 6 7 10 7 8 10 8 9 10
2 0 7 11 2 7 0 9 7 6 7 10 9 10 7
6 7 10 1 10 7 1 7 8 0 1 8 11 2 3
11 2 1 1 7 11 10 6 1 1 6 7
8 9 6 6 7 8 1 6 9 11 6 3 1 3 6
0 9 1 6 7 11
0 7 8 7 0 6 0 3 11 11 6 0
6 7 11
"""

#: ``TRIANGLES[c]``: the edge numbers of configuration ``c``'s triangles, three per triangle.
TRIANGLES: tuple[tuple[int, ...], ...] = tuple(tuple(int(v) for v in line.split())
                                               for line in _ROWS.split("\n")[0:128])
assert len(TRIANGLES) == 128 and all(len(t) % 3 == 0 for t in TRIANGLES)
