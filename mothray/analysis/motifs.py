"""Network motifs (protocol.md, "Network motifs"): exact counts of the nine motif classes in a
pruned network's layered graph, two null models, and z-scores against them.

A graph here is its layer adjacency, `list[(n_l, n_{l+1}) bool]`; nodes with no edge in it are
isolated and count in no motif. Counts are instances (subgraphs), from degrees and from pair
overlaps of the adjacency (e.g. bi-fans: Σ over node pairs of C(common targets, 2)), computed
by numba-compiled kernels per layer pair, each overlap sum the cheapest of three ways by its
estimated work: walks over neighbour lists when very sparse (cost grows with paths of two
edges), sums of byte rows eight to a word when sparse (cost grows with edges × width: every
overlap of one node at once), popcounts of ANDed bit sets when dense (node pairs × words).

Null models, sampled one graph per seed (each sample its own xoshiro256** random stream):
- `er`: per pair of adjacent layers the same nodes with outputs, the same nodes with inputs and
  the same number of edges; every such node keeps at least one. A sample is a random minimum
  edge cover (random matching plus random targets for the rest) and then the remaining edges
  uniformly among the empty cells. Not exactly uniform over the constrained graphs (graphs
  with many minimum covers are favoured slightly); exact uniformity needs rejection, which is
  hopeless near the minimum edge count of sparse levels.
- `degree`: every node keeps its in- and out-degree and edges stay between the same layers.
  A chain of random double-edge swaps (a→b, x→y to a→y, x→b, rejected when it would duplicate
  an edge); this chain is symmetric and connects all bipartite graphs with given degrees, so it
  is uniform in the limit. Above half density the swaps run on the complement of the layer
  pair (same degrees' complement, far more accepted swaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numba import njit

MOTIFS = (
    "edges",
    "diverging2",
    "converging2",
    "chain2",
    "diverging3",
    "converging3",
    "chain3",
    "bifan",
    "biparallel",
)
NULL_MODELS = ("er", "degree")
SAMPLES = 1000  # null graphs per network, level and null model (the follow-up study's)
SWAPS = 10  # attempted double-edge swaps per edge of the `degree` null


def live(masks: Sequence[np.ndarray], bias_masks: Sequence[np.ndarray] | None = None) -> list:
    """The masks with dead hidden nodes' edges removed, repeatedly until none remain: a hidden
    node is dead with no remaining input and no remaining bias, or with no remaining output.
    `bias_masks[l]` belongs to layer l's outputs; None means no biases."""
    graph = [np.array(mask, dtype=bool) for mask in masks]
    biased = [np.zeros(m.shape[1], bool) for m in graph] if bias_masks is None else bias_masks
    while True:
        changed = False
        for layer in range(len(graph) - 1):
            fed = graph[layer].any(axis=0) | np.asarray(biased[layer], bool)
            dead = ~(fed & graph[layer + 1].any(axis=1))
            edges = graph[layer][:, dead].any() or graph[layer + 1][dead].any()
            graph[layer][:, dead] = False
            graph[layer + 1][dead] = False
            changed |= bool(edges)
        if not changed:
            return graph


def count(masks: Sequence[np.ndarray], bias_masks: Sequence[np.ndarray] | None = None) -> dict:
    """The nine motif counts of one network: `masks` a list over layers of (n_in, n_out) bool,
    `bias_masks` a list over layers of (n_out,) bool or None (no biases). Dead nodes are
    removed first (`live`)."""
    adjacency, sizes = flatten(live(masks, bias_masks))
    return dict(zip(MOTIFS, (int(n) for n in _count(adjacency, sizes)), strict=True))


def flatten(graph: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A layer adjacency as the kernels take it: the matrices raveled one after another (uint8)
    and the layer sizes (n_0, …, n_L)."""
    sizes = np.array([graph[0].shape[0]] + [m.shape[1] for m in graph], np.int64)
    return np.concatenate([np.ravel(m) for m in graph]).astype(np.uint8), sizes


def unflatten(adjacency: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """The inverse of `flatten`."""
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    ends = np.cumsum([rows * cols for rows, cols in shapes])
    return [
        block.reshape(shape).astype(bool)
        for block, shape in zip(np.split(adjacency, ends[:-1]), shapes, strict=True)
    ]


def sample(graph: Sequence[np.ndarray], model: str, seeds: Sequence[int], swaps: int = SWAPS):
    """Null graphs of `graph` (dead nodes already removed), one per seed: list of graphs."""
    adjacency, sizes = flatten(graph)
    out = np.empty((len(seeds), adjacency.size), np.uint8)
    for row, seed in zip(out, seeds, strict=True):
        _null(adjacency, sizes, NULL_MODELS.index(model), np.uint32(seed), swaps, row)
    return [unflatten(row, sizes) for row in out]


def null_counts(
    graph: Sequence[np.ndarray], model: str, seeds: Sequence[int], swaps: int = SWAPS
) -> np.ndarray:
    """(len(seeds), 9) motif counts of null graphs of `graph`, one per seed; the kernel draws
    and counts each sample in turn, without keeping it."""
    adjacency, sizes = flatten(graph)
    seeds = np.asarray(seeds, np.uint32)
    return _null_counts(adjacency, sizes, NULL_MODELS.index(model), seeds, swaps)


class Significance(NamedTuple):
    """Per motif (last axis): the real count, the null ensemble's mean and standard deviation,
    z = (real − mean) / std (NaN where the null has no variance: `defined` False) and the
    empirical two-sided p-value (1 + #{|null − mean| ≥ |real − mean|}) / (samples + 1)."""

    real: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    z: np.ndarray
    p: np.ndarray
    defined: np.ndarray


def significance(real: np.ndarray, null: np.ndarray) -> Significance:
    """Compare real counts (9,) with null counts (samples, 9)."""
    real = np.asarray(real, np.int64)
    mean = null.mean(axis=0)
    std = null.std(axis=0, ddof=1) if len(null) > 1 else np.zeros(null.shape[1])
    defined = std > 0
    z = np.where(defined, (real - mean) / np.where(defined, std, 1.0), np.nan)
    extreme = np.abs(null - mean) >= np.abs(real - mean) - 1e-9 * np.maximum(1.0, np.abs(mean))
    p = (1 + extreme.sum(axis=0)) / (len(null) + 1)
    return Significance(real, mean, std, z, p, defined)


def seeds(key: Sequence[int], samples: int) -> np.ndarray:
    """One seed per null sample from (experiment seed, network seed, level, null model) and
    the sample's index, so a sample's graph depends on nothing else (workers, order, batches)."""
    return np.array(
        [np.random.SeedSequence([*key, sample]).generate_state(1)[0] for sample in range(samples)],
        np.uint32,
    )


def fixed(graph: Sequence[np.ndarray]) -> bool:
    """Whether both null models have one graph only: every layer pair empty or complete among
    its nodes with edges, as at the dense level. Its samples would all be the graph itself."""
    for mask in graph:
        rows, cols = mask.any(axis=1), mask.any(axis=0)
        if mask.sum() != rows.sum() * cols.sum():
            return False
    return True


def compare(
    graph: Sequence[np.ndarray], model: str, key: Sequence[int], samples: int, swaps: int = SWAPS
) -> Significance:
    """The real counts of `graph` (dead nodes removed) against `samples` null graphs of
    `model`, drawn from the streams of `key` = (experiment seed, network seed, level, model)."""
    adjacency, sizes = flatten(graph)
    real = _count(adjacency, sizes)
    if fixed(graph):  # every sample would be the graph: no variance, z undefined
        return significance(real, np.tile(real, (samples, 1)))
    return significance(real, null_counts(graph, model, seeds(key, samples), swaps))


# numba kernels: a graph is (adjacency, sizes) as `flatten` makes it.


@njit(cache=True)
def _offsets(sizes):
    """Where each layer pair's matrix starts in the flat adjacency, and each layer's nodes
    among all nodes."""
    pairs = np.zeros(len(sizes), np.int64)
    nodes = np.zeros(len(sizes) + 1, np.int64)
    for layer in range(len(sizes)):
        nodes[layer + 1] = nodes[layer] + sizes[layer]
        if layer + 1 < len(sizes):
            pairs[layer + 1] = pairs[layer] + sizes[layer] * sizes[layer + 1]
    return pairs, nodes


@njit(cache=True)
def _count(adjacency, sizes):
    """The nine counts, in MOTIFS order."""
    pairs, nodes = _offsets(sizes)
    layers = len(sizes) - 1
    matrices = [adjacency[pairs[layer] : pairs[layer + 1]] for layer in range(layers)]
    indeg = np.zeros(nodes[-1], np.int64)
    outdeg = np.zeros(nodes[-1], np.int64)
    by_row, by_col, inflow = [], [], []  # inflow: per column, Σ over its rows of their in-degrees
    byte_rows = []
    for layer in range(layers):
        fan_in = indeg[nodes[layer] : nodes[layer + 1]]
        scan = _scan(matrices[layer], sizes[layer], sizes[layer + 1], fan_in)
        by_row.append(scan[0])
        byte_rows.append(scan[2])
        by_col.append(_transpose(scan[0], sizes[layer + 1], sizes[layer]))
        outdeg[nodes[layer] : nodes[layer + 1]] = _sizes(scan[0])
        inflow.append(scan[1])
        indeg[nodes[layer + 1] : nodes[layer + 2]] = _sizes(by_col[layer])
    counts = np.zeros(9, np.int64)
    for node in range(nodes[-1]):
        i, o = indeg[node], outdeg[node]
        counts[0] += o
        counts[1] += o * (o - 1) // 2
        counts[2] += i * (i - 1) // 2
        counts[3] += i * o
        counts[4] += o * (o - 1) * (o - 2) // 6
        counts[5] += i * (i - 1) * (i - 2) // 6
    for layer in range(layers):  # chains a→b→c→d: Σ over edges b→c of indeg(b)·outdeg(c)
        counts[6] += np.sum(inflow[layer] * outdeg[nodes[layer + 1] : nodes[layer + 2]])
    by_rows, bifan_how, bipar_how = _plans(indeg, outdeg, sizes, nodes)
    row_lists, col_lists, byte_cols = [], [], []  # only where a method needs them (else empty)
    for layer in range(layers):
        rows, cols = sizes[layer], sizes[layer + 1]
        onward = layer + 1 < layers
        if (
            bifan_how[layer] == _WALKS
            or bipar_how[layer] == _WALKS
            or (onward and bipar_how[layer + 1] in (_SUMS, _WALKS))
        ):
            row_lists.append(_members(by_row[layer], rows))
        else:
            row_lists.append(_members(np.zeros((0, rows), np.uint64), rows))
        if bifan_how[layer] in (_SUMS, _WALKS) or bipar_how[layer] == _SUMS_BACK:
            col_lists.append(_members(by_col[layer], cols))
        else:
            col_lists.append(_members(np.zeros((0, cols), np.uint64), cols))
        if onward and bipar_how[layer + 1] == _SUMS_BACK:
            byte_cols.append(_byte_columns(by_col[layer], rows, cols))
        else:
            byte_cols.append(np.zeros((0, 0), np.uint64))
    for layer in range(layers):
        rows_of, cols_of = row_lists[layer], col_lists[layer]
        if bifan_how[layer] == _SUMS:  # pairs of columns, by their rows' bytes
            counts[7] += _overlaps_summed(cols_of, byte_rows[layer], sizes[layer + 1], True)
        elif bifan_how[layer] == _WALKS and by_rows[layer]:
            counts[7] += _overlaps_sparse(rows_of, cols_of, sizes[layer], True)
        elif bifan_how[layer] == _WALKS:
            counts[7] += _overlaps_sparse(cols_of, rows_of, sizes[layer + 1], True)
        elif by_rows[layer]:
            counts[7] += _overlaps_dense(by_row[layer], by_row[layer], True)
        else:
            counts[7] += _overlaps_dense(by_col[layer], by_col[layer], True)
    for layer in range(1, layers):
        x = row_lists[layer - 1]  # the previous layer's rows' columns: this layer's nodes
        if bipar_how[layer] == _SUMS:
            counts[8] += _overlaps_summed(x, byte_rows[layer], sizes[layer + 1], False)
        elif bipar_how[layer] == _SUMS_BACK:  # from the far side: its columns' rows
            y = col_lists[layer]
            counts[8] += _overlaps_summed(y, byte_cols[layer - 1], sizes[layer - 1], False)
        elif bipar_how[layer] == _WALKS:
            counts[8] += _overlaps_sparse(x, row_lists[layer], sizes[layer + 1], False)
        else:
            counts[8] += _overlaps_dense(by_row[layer - 1], by_col[layer], False)
    return counts


# How `_count` finds an overlap sum (`_plans`): popcounts of bit sets, walks over neighbour
# lists, or sums of byte rows (bi-parallels also from the far side: `_SUMS_BACK`).
_POPCOUNTS, _WALKS, _SUMS, _SUMS_BACK = 0, 1, 2, 3


@njit(cache=True)
def _plans(indeg, outdeg, sizes, nodes):
    """How `_count` finds each overlap sum, the cheapest way by estimated work: per layer pair
    whether its bi-fans go by pairs of rows (else of columns) and by which method, and per
    middle layer (from 1) by which method its bi-parallels go. Bi-fan sums go by columns."""
    layers = len(sizes) - 1
    by_rows = np.zeros(layers, np.bool_)
    bifan_how = np.zeros(layers, np.int64)
    bipar_how = np.zeros(layers, np.int64)
    for layer in range(layers):
        fan_out = outdeg[nodes[layer] : nodes[layer + 1]]  # the rows' degrees
        fan_in = indeg[nodes[layer + 1] : nodes[layer + 2]]  # the columns'
        rows, cols = np.count_nonzero(fan_out), np.count_nonzero(fan_in)  # with an edge
        row_plan = _plan(fan_in, fan_in, rows * rows, True)  # pairs of rows, via columns
        col_plan = _plan(fan_out, fan_out, cols * cols, True)  # pairs of columns, via rows
        by_rows[layer] = row_plan[0] < col_plan[0]
        work, bifan_how[layer] = row_plan if by_rows[layer] else col_plan
        sums = _sums_work(fan_in, sizes[layer + 1], True)
        if 0 <= sums < work:
            by_rows[layer], bifan_how[layer] = False, _SUMS
        if layer > 0:
            middle = slice(nodes[layer], nodes[layer + 1])
            pairs = np.count_nonzero(outdeg[nodes[layer - 1] : nodes[layer]]) * cols
            work, bipar_how[layer] = _plan(indeg[middle], outdeg[middle], pairs, False)
            sums = _sums_work(outdeg[nodes[layer - 1] : nodes[layer]], sizes[layer + 1], False)
            if 0 <= sums < work:
                work, bipar_how[layer] = sums, _SUMS
            sums = _sums_work(indeg[nodes[layer + 1] : nodes[layer + 2]], sizes[layer - 1], False)
            if 0 <= sums and sums + 2 * sizes[layer] * ((sizes[layer - 1] + 7) // 8) < work:
                bipar_how[layer] = _SUMS_BACK  # its work includes making the byte columns
    return by_rows, bifan_how, bipar_how


@njit(cache=True)
def _plan(x_degree, via_degree, pairs, same):
    """(estimated work, method) of an overlap sum by popcounts or walks, from the middle
    nodes' degrees towards both sides and the (a, d) pairs with edges: a walk step costs about
    4.5 words' popcounts."""
    walks = 9 * np.sum(x_degree * via_degree)
    words = 2 * pairs * ((len(x_degree) + 63) // 64)
    if same:
        walks, words = walks // 2, words // 2
    return (words, _POPCOUNTS) if words < walks else (walks, _WALKS)


@njit(cache=True)
def _sums_work(x_degree, width, same):
    """Estimated work of `_overlaps_summed` (in `_plan`'s units; measured at the paper's
    sizes), from the x side's degrees into the middle layer and the y side's width; -1 when an
    overlap could pass 255, a byte counter's range, or a row's squared overlaps 2^32."""
    if len(x_degree) == 0 or np.max(x_degree) > 255 or width > 66_000:
        return -1
    work = 2 * np.sum(x_degree) * ((width + 7) // 8) + 3 * np.count_nonzero(x_degree > 1) * width
    return work // 2 if same else work


@njit(cache=True)
def _scan(matrix, rows, cols, fan_in):
    """One pass over a layer pair's (rows, cols) 0/1 matrix: its rows as bit sets of columns,
    word-major ((⌈cols/64⌉, rows) uint64), per column the sum of `fan_in` over its rows, and
    its rows as bytes (`_byte_rows`).
    Eight bytes pack into eight bits by one multiply (byte i's low bit to bit 56 + i)."""
    by_row = np.zeros(((cols + 63) // 64, rows), np.uint64)
    byte_rows = _byte_rows(matrix, rows, cols)
    pack = np.uint64(0x0102040810204080)
    for a in range(rows):
        for g in range(byte_rows.shape[1]):
            bits = (byte_rows[a, g] * pack) >> np.uint64(56)
            by_row[g >> 3, a] |= bits << np.uint64(8 * (g & 7))
    if np.sum(fan_in) < 2**31:  # no column's sum passes 32 bits: eight lanes per vector
        return by_row, _weighted_sums(matrix, cols, fan_in, np.zeros(cols, np.int32)), byte_rows
    return by_row, _weighted_sums(matrix, cols, fan_in, np.zeros(cols, np.int64)), byte_rows


@njit(cache=True)
def _weighted_sums(matrix, cols, weights, sums):
    """Per column of a (len(weights), cols) 0/1 matrix, the sum of `weights` over its rows
    into `sums` (its dtype wide enough), as int64."""
    for a in range(len(weights)):
        row = matrix[a * cols : (a + 1) * cols]
        weight = sums.dtype.type(weights[a])
        for b in range(np.uint64(cols)):  # unsigned: vectorized
            sums[b] += row[b] * weight
    return sums.astype(np.int64)


@njit(cache=True)
def _transpose(by_col, rows, cols):
    """The rows' bit sets of columns from the columns' of rows, word-major: (⌈cols/64⌉, rows)
    uint64, by 64×64 bit blocks, each transposed by swapping ever smaller sub-blocks."""
    by_row = np.zeros(((cols + 63) // 64, rows), np.uint64)
    block = np.zeros(64, np.uint64)
    for row_word in range(len(by_col)):
        for col_word in range(len(by_row)):
            block[:] = 0  # block[i]: column 64·col_word + i's rows, bit j for row 64·row_word + j
            end = min(64, cols - 64 * col_word)
            block[:end] = by_col[row_word, 64 * col_word : 64 * col_word + end]
            j, low = 32, np.uint64(0xFFFFFFFF)  # low: the low j bits of every 2j
            while j:
                for start in range(0, 64, 2 * j):
                    for k in range(start, start + j):  # k's high j bits ↔ (k + j)'s low j bits
                        t = ((block[k] >> np.uint64(j)) ^ block[k + j]) & low
                        block[k + j] ^= t
                        block[k] ^= t << np.uint64(j)
                j //= 2
                low ^= low << np.uint64(j)
            end = min(64, rows - 64 * row_word)
            by_row[col_word, 64 * row_word : 64 * row_word + end] = block[:end]
    return by_row


@njit(cache=True)
def _sizes(sets):
    """The sizes of word-major bit sets."""
    sizes = np.zeros(sets.shape[1], np.int64)
    for w in range(len(sets)):
        for a in range(sets.shape[1]):
            sizes[a] += _popcount(sets[w, a])
    return sizes


@njit(cache=True)
def _members(sets, count):
    """`count` word-major bit sets as neighbour lists: start offsets and ascending members."""
    start = np.zeros(count + 1, np.int64)
    start[1:] = np.cumsum(_sizes(sets))
    members = np.empty(start[-1], np.int64)
    for node in range(count):
        at = start[node]
        for w in range(len(sets)):
            word = sets[w, node]
            while word:
                members[at] = 64 * w + _popcount((word & (~word + np.uint64(1))) - np.uint64(1))
                word &= word - np.uint64(1)
                at += 1
    return start, members


@njit(cache=True)
def _overlaps_sparse(x, via, ny, same):
    """Σ over nodes a and d of C(|X(a) ∩ Y(d)|, 2), from X's and `via`'s (Y transposed)
    neighbour lists into one middle layer, over d > a only when X is Y (`same`): by walks
    a → u → d, adding each d's overlap so far, as Σ C(m, 2) = Σ (0 + … + m−1)."""
    (x_start, x_members), (via_start, via_members) = x, via
    after = via_start[:-1].copy()  # same: per u, where its d's after the current a begin
    shared = np.zeros(ny, np.int32)
    total = 0
    for a in range(len(x_start) - 1):
        if x_start[a] == x_start[a + 1]:
            continue
        shared[:] = 0
        for i in range(x_start[a], x_start[a + 1]):
            u = x_members[i]
            first = via_start[u]
            if same:  # u's ascending d's: the earlier a, then a itself; skip past it
                after[u] += 1
                first = after[u]
            for j in range(first, via_start[u + 1]):
                d = via_members[j]
                total += shared[d]
                shared[d] += 1
    return total


@njit(cache=True)
def _overlaps_dense(x, y, same):
    """The same sum from X's and Y's word-major bit sets: per (a, d), the popcounts of their
    ANDed words, summed in registers, four d at a time (on node-major copies: a node's words
    adjacent; Y's padded by three empty nodes)."""
    y = _node_major(y, 3)
    x = y[:-3] if same else _node_major(x, 0)
    total = 0
    for a in range(len(x)):
        xa = x[a]
        for d in range(a + 1 if same else 0, len(y) - 3, 4):
            m0 = m1 = m2 = m3 = 0
            for w in range(len(xa)):
                m0 += _popcount(xa[w] & y[d, w])
                m1 += _popcount(xa[w] & y[d + 1, w])
                m2 += _popcount(xa[w] & y[d + 2, w])
                m3 += _popcount(xa[w] & y[d + 3, w])
            total += m0 * (m0 - 1) + m1 * (m1 - 1) + m2 * (m2 - 1) + m3 * (m3 - 1)
    return total // 2


@njit(cache=True)
def _overlaps_summed(x, via_rows, ny, same):
    """The same sum from X's neighbour lists and the middle layer's rows towards Y as bytes
    (`_byte_rows`): per a, adding its middle nodes' rows eight bytes to a uint64 word gives
    every d's overlap at once (at most 255: no carries between bytes). Indices are unsigned,
    so numba checks no wraparound and LLVM vectorizes the adds."""
    x_start, x_members = x
    words = np.uint64(via_rows.shape[1])
    overlaps = np.zeros(via_rows.shape[1], np.uint64)
    overlap = overlaps.view(np.uint8)
    total = 0
    for a in range(len(x_start) - 1):
        if x_start[a + 1] - x_start[a] < 2:  # overlaps of at most 1: no pairs
            continue
        first = np.uint64(a + 1 if same else 0)
        start, i, end = first >> np.uint64(3), x_start[a] + 2, x_start[a + 1]
        r0, r1 = via_rows[x_members[i - 2]], via_rows[x_members[i - 1]]
        for k in range(start, words):
            overlaps[k] = r0[k] + r1[k]
        while i + 4 <= end:  # four rows a pass: a quarter of the loads and stores of sums
            r0, r1 = via_rows[x_members[i]], via_rows[x_members[i + 1]]
            r2, r3 = via_rows[x_members[i + 2]], via_rows[x_members[i + 3]]
            for k in range(start, words):
                overlaps[k] += (r0[k] + r1[k]) + (r2[k] + r3[k])
            i += 4
        for rest in range(i, end):
            r0 = via_rows[x_members[rest]]
            for k in range(start, words):
                overlaps[k] += r0[k]
        squares, sizes = np.uint32(0), np.uint32(0)  # 32-bit lanes: ny·255² < 2^32 (`_sums_work`)
        for d in range(first, np.uint64(ny)):
            m = np.uint32(overlap[d])
            squares += m * m
            sizes += m
        total += np.int64(squares) - np.int64(sizes)
    return total // 2


@njit(cache=True)
def _byte_rows(matrix, rows, cols):
    """A layer pair's (rows, cols) 0/1 matrix as bytes, each row padded to whole uint64 words:
    (rows, ⌈cols/8⌉) uint64, the matrix itself when its rows are whole words."""
    if cols % 8 == 0:
        return matrix.view(np.uint64).reshape(rows, cols // 8)
    words = (cols + 7) // 8
    padded = np.zeros((rows, words * 8), np.uint8)
    for a in range(rows):
        row = matrix[a * cols : (a + 1) * cols]
        for b in range(np.uint64(cols)):
            padded[a, b] = row[b]
    return padded.view(np.uint64)


# Each byte's bits spread to a word's bytes: bit i of the byte to byte i of the word (0 or 1).
_SPREAD = np.array(
    [sum(((byte >> i) & 1) << (8 * i) for i in range(8)) for byte in range(256)], np.uint64
)


@njit(cache=True)
def _byte_columns(by_col, rows, cols):
    """A layer pair's columns as bytes from their bit sets of rows: (cols, ⌈rows/8⌉) uint64,
    byte i of word k being row 8k + i (`_SPREAD`)."""
    words = (rows + 7) // 8
    out = np.empty((cols, words), np.uint64)
    for b in range(cols):
        for k in range(words):
            out[b, k] = _SPREAD[(by_col[k >> 3, b] >> np.uint64(8 * (k & 7))) & np.uint64(0xFF)]
    return out


@njit(cache=True)
def _node_major(sets, padding):
    """The nonempty ones of word-major bit sets (the empty overlap nothing) as rows of words,
    padded to a multiple of 4 words when more than 2 (whole AVX2 vectors), then `padding`
    empty rows."""
    words = len(sets) if len(sets) <= 2 else (len(sets) + 3) // 4 * 4
    kept = np.flatnonzero(_sizes(sets))
    out = np.zeros((len(kept) + padding, words), np.uint64)
    for row, node in enumerate(kept):
        out[row, : len(sets)] = sets[:, node]
    return out


@njit(cache=True)
def _popcount(v):
    """Set bits of a uint64 (LLVM compiles this to popcnt, or vectorizes it)."""
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((v * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def _null_counts(adjacency, sizes, model, seeds, swaps):
    counts = np.empty((len(seeds), 9), np.int64)
    graph = np.empty_like(adjacency)
    nodes = _participants(adjacency, sizes)
    for row in range(len(seeds)):
        _draw(adjacency, sizes, nodes, model, seeds[row], swaps, graph)
        counts[row] = _count(graph, sizes)
    return counts


@njit(cache=True)
def _null(adjacency, sizes, model, seed, swaps, out):
    """One null graph of `adjacency` into `out`, from its own stream `seed`."""
    _draw(adjacency, sizes, _participants(adjacency, sizes), model, seed, swaps, out)


@njit(cache=True)
def _draw(adjacency, sizes, nodes, model, seed, swaps, out):
    """`_null`, given `_participants`."""
    state = _stream(seed)
    pairs, _ = _offsets(sizes)
    for layer in range(len(sizes) - 1):
        cols = sizes[layer + 1]
        real = adjacency[pairs[layer] : pairs[layer + 1]]
        drawn = out[pairs[layer] : pairs[layer + 1]]
        sources, targets, edges = nodes[layer]
        if model == 0:
            state = _er_pair(sources.copy(), targets.copy(), edges, cols, state, drawn)
        else:
            state = _swapped_pair(real, sources, targets, edges, cols, swaps, state, drawn)


@njit(cache=True)
def _stream(seed):
    """A xoshiro256** state seeded by splitmix64 (numba's np.random costs ~25 ns a draw). States
    are tuples, passed on and returned, so that they stay in registers in the loops."""
    x = np.uint64(seed)
    words = []
    for _ in range(4):
        x += np.uint64(0x9E3779B97F4A7C15)
        z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        words.append(z ^ (z >> np.uint64(31)))
    return words[0], words[1], words[2], words[3]


@njit(cache=True)
def _next(state):
    """The stream's next 64 random bits (xoshiro256**) and its next state."""
    s0, s1, s2, s3 = state
    result = _rotate(s1 * np.uint64(5), 7) * np.uint64(9)
    s2 ^= s0
    s3 ^= s1
    return result, (s0 ^ s3, s1 ^ s2, s2 ^ (s1 << np.uint64(17)), _rotate(s3, 45))


@njit(cache=True)
def _rotate(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def _below(state, n):
    """A uniform integer in [0, n), n < 2^32, and the stream's state: Lemire's multiply-shift,
    rejecting the biased."""
    n = np.uint64(n)
    while True:
        bits, state = _next(state)
        product = (bits >> np.uint64(32)) * n
        if _unbiased(product & np.uint64(0xFFFFFFFF), n):
            return np.int64(product >> np.uint64(32)), state


@njit(cache=True)
def _below_pair(state, n, m, biased):
    """Uniform integers in [0, n) and [0, m) (uint64, < 2^32) from the two halves of one
    draw, each by Lemire's multiply-shift, rejecting both when either falls in its biased
    range (`biased`: `_biased(n)`, `_biased(m)`), and the stream's state."""
    low32 = np.uint64(0xFFFFFFFF)
    while True:
        bits, state = _next(state)
        first, second = (bits >> np.uint64(32)) * n, (bits & low32) * m
        if (first & low32) >= biased[0] and (second & low32) >= biased[1]:
            return np.int64(first >> np.uint64(32)), np.int64(second >> np.uint64(32)), state


@njit(cache=True)
def _biased(n):
    """How many of the 2^32 low halves of Lemire's multiply-shift by n (uint64) are rejected."""
    return (np.uint64(1 << 32) - n) % n


@njit(cache=True)
def _unbiased(low, n):
    """Whether Lemire's multiply-shift keeps a product whose low 32 bits are `low`."""
    return low >= n or low >= _biased(n)


@njit(cache=True)
def _shuffle(state, values):
    """Fisher–Yates, in place; returns the stream's state."""
    for i in range(len(values) - 1, 0, -1):
        j, state = _below(state, i + 1)
        values[i], values[j] = values[j], values[i]
    return state


@njit(cache=True)
def _participants(adjacency, sizes):
    """Per layer pair: the rows with an edge, the columns with an edge, and the edge count."""
    pairs, _ = _offsets(sizes)
    nodes = []
    for layer in range(len(sizes) - 1):
        rows, cols = sizes[layer], sizes[layer + 1]
        real = adjacency[pairs[layer] : pairs[layer + 1]]
        has_row = np.zeros(rows, np.bool_)
        has_col = np.zeros(cols, np.bool_)
        edges = 0
        for a in range(rows):
            for b in range(cols):
                if real[a * cols + b]:
                    has_row[a] = True
                    has_col[b] = True
                    edges += 1
        nodes.append((np.flatnonzero(has_row), np.flatnonzero(has_col), edges))
    return nodes


@njit(cache=True)
def _er_pair(sources, targets, edges, cols, state, out):
    """Same nodes with edges (`sources`, `targets`: shuffled here), same edge count, every such
    node keeps one: a random minimum edge cover, then the other edges uniformly among the empty
    cells (the module docstring). Returns the stream's state."""
    out[:] = 0
    if edges == 0:
        return state
    state = _shuffle(state, sources)
    state = _shuffle(state, targets)
    many, few = (sources, targets) if len(sources) >= len(targets) else (targets, sources)
    cover = np.empty(len(many), np.int64)
    for i in range(len(many)):  # a matching of `few`, then random partners for the rest
        partner = few[i]
        if i >= len(few):
            pick, state = _below(state, len(few))
            partner = few[pick]
        a, b = (many[i], partner) if len(sources) >= len(targets) else (partner, many[i])
        cover[i] = a * cols + b
        out[cover[i]] = 2
    free = len(sources) * len(targets) - len(many)
    extra = edges - len(many)
    # fill the fewer of (edges to add, cells to leave empty) by rejection: at most 2 draws each
    mark = 1 if 2 * extra <= free else 0
    if mark == 0:
        for a in sources:
            for b in targets:
                if out[a * cols + b] == 0:
                    out[a * cols + b] = 1
    todo = extra if mark == 1 else free - extra
    n_sources, n_targets = np.uint64(len(sources)), np.uint64(len(targets))
    biased = _biased(n_sources), _biased(n_targets)
    while todo > 0:
        source, target, state = _below_pair(state, n_sources, n_targets, biased)
        cell = sources[source] * cols + targets[target]
        if out[cell] == 1 - mark:
            out[cell] = mark
            todo -= 1
    for cell in cover:  # marked 2, apart from the cells to fill or to empty
        out[cell] = 1
    return state


@njit(cache=True)
def _swapped_pair(real, sources, targets, edges, cols, swaps, state, out):
    """The same degrees after `swaps` attempted double-edge swaps per edge; on the complement
    among the nodes with edges (`sources`, `targets`) when that has fewer edges. Returns the
    stream's state."""
    out[:] = real
    cells = len(sources) * len(targets)
    complement = 2 * edges > cells
    if complement:
        _flip(out, sources, targets, cols)
    count = cells - edges if complement else edges
    if count < 2:
        if complement:
            _flip(out, sources, targets, cols)
        return state
    ends = np.empty((count, 2), np.int32)  # (head, tail): one cache line per edge
    k = 0
    for a in sources:
        for b in targets:
            if out[a * cols + b]:
                ends[k, 0], ends[k, 1] = a, b
                k += 1
    n = np.uint64(count)
    biased = _biased(n), _biased(n)
    i, j, state = _below_pair(state, n, n, biased)
    for _ in range(swaps * count):
        next_i, next_j, state = _below_pair(state, n, n, biased)
        a, b, x, y = ends[i, 0], ends[i, 1], ends[j, 0], ends[j, 1]
        # load the next pair's ends before this unpredictable branch: their cache misses overlap
        ahead = ends[next_i, 0] + ends[next_j, 0]
        if ahead >= 0 and a != x and b != y and not out[a * cols + y] and not out[x * cols + b]:
            out[a * cols + b] = 0
            out[x * cols + y] = 0
            out[a * cols + y] = 1
            out[x * cols + b] = 1
            ends[i, 1], ends[j, 1] = y, b
        i, j = next_i, next_j
    if complement:
        _flip(out, sources, targets, cols)
    return state


@njit(cache=True)
def _flip(out, sources, targets, cols):
    for a in sources:
        for b in targets:
            out[a * cols + b] = 1 - out[a * cols + b]
