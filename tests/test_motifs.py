"""Network motifs (`mothray.analysis.motifs`, protocol.md "Network motifs"): counts equal a
brute-force enumeration of subgraph instances after an independent dead-node removal, the null
models keep exactly their constraints, a sample depends on its seed alone, z-scores follow
their definition and are calibrated on graphs drawn from the null itself, and the degree null
is decorrelated from its start within the default swaps."""

import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy import stats

from mothray.analysis import motifs
from mothray.analysis.motifs import (
    MOTIFS,
    NULL_MODELS,
    SWAPS,
    Significance,
    compare,
    count,
    fixed,
    flatten,
    live,
    null_counts,
    sample,
    seeds,
    significance,
    unflatten,
)

# protocol.md's motif classes, written with its node letters: an instance is a set of edges
# that some injective map of the letters onto the graph's nodes makes of these arcs.
PATTERNS = {
    "edges": "a>b",
    "diverging2": "a>b a>c",
    "converging2": "a>c b>c",
    "chain2": "a>b b>c",
    "diverging3": "a>b a>c a>d",
    "converging3": "a>d b>d c>d",
    "chain3": "a>b b>c c>d",
    "bifan": "a>c a>d b>c b>d",
    "biparallel": "a>b a>c b>d c>d",
}
# motifs whose counts the degree null keeps (functions of the degrees) and the er null keeps
DEGREE_FIXED = ("edges", "diverging2", "converging2", "chain2", "diverging3", "converging3")
ER_FIXED = ("edges",)


def edge_set(masks) -> set:
    """A layer adjacency's edges between (layer, index) nodes."""
    return {
        ((layer, int(a)), (layer + 1, int(b)))
        for layer, mask in enumerate(masks)
        for a, b in zip(*np.nonzero(mask), strict=True)
    }


def brute_live(masks, bias_masks) -> set:
    """The edges left once dead nodes are gone, node by node: a hidden node dies with no edge
    from a live node and no bias, or with no edge to a live node; inputs and outputs never
    die. Repeated until no node dies."""
    last = len(masks)
    edges = edge_set(masks)
    alive = {(0, i) for i in range(np.shape(masks[0])[0])}
    alive |= {(layer + 1, i) for layer, mask in enumerate(masks) for i in range(mask.shape[1])}
    while True:
        edges = {(u, v) for u, v in edges if u in alive and v in alive}
        dead = set()
        for node in alive:
            layer, index = node
            if layer in (0, last):
                continue
            biased = bias_masks is not None and bool(bias_masks[layer - 1][index])
            fed = biased or any(v == node for _, v in edges)
            feeds = any(u == node for u, _ in edges)
            if not (fed and feeds):
                dead.add(node)
        if not dead:
            return edges
        alive -= dead


def instances(edges: set, pattern: str) -> set:
    """Every instance of `pattern` in `edges`, each once: the edge sets of all injective maps
    of the pattern's letters onto nodes that send every arc to an edge (backtracking; a
    letter joined by an arc to a mapped one draws its candidates from that node's edges)."""
    arcs = [tuple(arc.split(">")) for arc in pattern.split()]
    successors, predecessors = {}, {}
    for u, v in edges:
        successors.setdefault(u, set()).add(v)
        predecessors.setdefault(v, set()).add(u)
    nodes = set(successors) | set(predecessors)
    letters = sorted({x for arc in arcs for x in arc})
    order = [letters[0]]  # each letter after the first joined by an arc to an earlier one
    while len(order) < len(letters):
        order.append(
            next(
                x
                for x in letters
                if x not in order and any(x in arc and set(arc) - {x} <= set(order) for arc in arcs)
            )
        )
    found = set()

    def extend(image: dict) -> None:
        if len(image) == len(order):
            found.add(frozenset((image[x], image[y]) for x, y in arcs))
            return
        letter = order[len(image)]
        for x, y in arcs:  # an arc to a mapped letter bounds the candidates
            if x == letter and y in image:
                candidates = predecessors.get(image[y], set())
            elif y == letter and x in image:
                candidates = successors.get(image[x], set())
        checks = [(x, y) for x, y in arcs if letter in (x, y) and {x, y} - {letter} <= set(image)]
        for node in candidates - set(image.values()) if image else nodes:
            image[letter] = node
            if all((image[x], image[y]) in edges for x, y in checks):
                extend(image)
            del image[letter]

    extend({})
    return found


def brute_count(masks, bias_masks=None) -> dict:
    """The nine counts by enumeration, after the brute-force dead-node removal."""
    edges = brute_live(masks, bias_masks)
    return {motif: len(instances(edges, PATTERNS[motif])) for motif in MOTIFS}


def formula_count(graph) -> dict:
    """The nine counts of a live graph by matrix algebra, a reference for layers too wide to
    enumerate: C(degree, k) summed over nodes, chains as sums of matrix products, bi-fans
    Σ_{a<b} C((A Aᵀ)_ab, 2) per pair and bi-parallels Σ C((A_l A_l+1)_ad, 2)."""
    a = [np.asarray(mask, np.int64) for mask in graph]
    out = [m.sum(axis=1) for m in a]
    into = [m.sum(axis=0) for m in a]

    def pairs(x, k=2):
        return int(sum(int(comb(int(v), k)) for v in np.ravel(x)))

    common = [m @ m.T for m in a]
    return {
        "edges": int(sum(m.sum() for m in a)),
        "diverging2": sum(pairs(d) for d in out),
        "converging2": sum(pairs(d) for d in into),
        "chain2": int(sum((x @ y).sum() for x, y in itertools.pairwise(a))),
        "diverging3": sum(pairs(d, 3) for d in out),
        "converging3": sum(pairs(d, 3) for d in into),
        "chain3": int(sum((a[i] @ a[i + 1] @ a[i + 2]).sum() for i in range(len(a) - 2))),
        "bifan": sum(pairs(c[np.triu_indices(len(c), 1)]) for c in common),
        "biparallel": sum(pairs(x @ y) for x, y in itertools.pairwise(a)),
    }


def random_graph(rng, max_size=6, max_layers=6):
    """Random masks: 2 to `max_layers` layers of 1 to `max_size` nodes, a few of them empty;
    each pair empty, complete or of a random density; and biases: none, or each layer's at a
    random rate (none, all or some)."""
    sizes = rng.integers(1, max_size + 1, size=rng.integers(2, max_layers + 1))
    sizes[rng.random(len(sizes)) < 0.1] = 0
    masks = []
    for rows, cols in itertools.pairwise(sizes):
        density = rng.choice(
            [0.0, 1.0, rng.uniform(0.3, 1), rng.random()], p=[0.05, 0.2, 0.5, 0.25]
        )
        masks.append(rng.random((rows, cols)) < density)
    if rng.random() < 1 / 3:
        return masks, None
    rate = rng.choice([0.0, 1.0, rng.random()])
    return masks, [rng.random(size) < rate for size in sizes[1:]]


def random_live(rng, sizes, densities, biased=True):
    """A random layer adjacency with the given sizes and per-pair densities, dead nodes
    removed (every hidden node biased unless `biased` is False)."""
    masks = [
        rng.random((rows, cols)) < density
        for (rows, cols), density in zip(itertools.pairwise(sizes), densities, strict=True)
    ]
    return live(masks, all_biased(masks) if biased else None)


def all_biased(masks):
    return [np.ones(mask.shape[1], bool) for mask in masks]


def blocks(n: int, k: int) -> np.ndarray:
    """An (n, n) block-diagonal mask of complete (k, k) blocks: many bi-fans."""
    return np.kron(np.eye(n // k, dtype=bool), np.ones((k, k), bool))


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def key(graph) -> bytes:
    return flatten(graph)[0].tobytes()


# counts


def test_counts_equal_brute_force_enumeration():
    """On 300 random small layered graphs (empty layers, empty and complete pairs, with and
    without biases) every count equals the number of instances enumerated from the edges
    left by an independent dead-node removal, and `live` leaves exactly those edges (and the
    matrix-algebra reference of the wide-layer test agrees)."""
    rng = np.random.default_rng(20240611)
    nonzero = dict.fromkeys(MOTIFS, 0)
    for trial in range(300):
        masks, bias_masks = random_graph(rng)
        expected = brute_count(masks, bias_masks)
        assert count(masks, bias_masks) == expected, (trial, masks, bias_masks)
        assert edge_set(live(masks, bias_masks)) == brute_live(masks, bias_masks), trial
        assert formula_count(live(masks, bias_masks)) == expected, trial
        for motif in MOTIFS:
            nonzero[motif] += expected[motif] > 0
    assert min(nonzero.values()) >= 30, nonzero  # every class was really exercised


def test_counts_on_wide_layers_equal_matrix_formulas():
    """On graphs with layers of 63 to 130 nodes (across 64-node words), sparse and dense,
    the counts equal the matrix-algebra reference."""
    rng = np.random.default_rng(64)
    for sizes in ([3, 64, 65, 2], [5, 130, 63, 129, 4], [2, 128, 1, 66, 3], [70, 70, 70]):
        for density in (0.02, 0.1, 0.5, 0.9):
            masks = [rng.random(shape) < density for shape in itertools.pairwise(sizes)]
            bias = all_biased(masks) if density < 0.3 else None
            assert count(masks, bias) == formula_count(live(masks, bias)), (sizes, density)


def test_counts_at_the_paper_scale_equal_matrix_formulas():
    """The paper architecture (10-400-400-400-16-7, biases kept) at sparse and middle
    densities, and many sparse 60-node layers: the counts equal the matrix-algebra reference."""
    rng = np.random.default_rng(400)
    cases = [([10, 400, 400, 400, 16, 7], density) for density in (0.07, 0.02, 0.45)]
    cases += [([60, 60, 60], 0.07)] * 20
    for sizes, density in cases:
        masks = [rng.random(shape) < density for shape in itertools.pairwise(sizes)]
        bias = all_biased(masks)
        assert count(masks, bias) == formula_count(live(masks, bias)), (sizes, density)


def layer_pair_kernels(matrix):
    """A (rows, cols) 0/1 matrix in every form the overlap kernels take: flat bytes, its rows'
    and columns' bit sets, neighbour lists, byte rows and byte columns."""
    rows, cols = matrix.shape
    flat = matrix.astype(np.uint8).ravel()
    by_row, _, byte_rows = motifs._scan(flat, rows, cols, np.zeros(rows, np.int64))
    by_col = motifs._transpose(by_row, cols, rows)
    return {
        "by_row": by_row,
        "by_col": by_col,
        "rows_of": motifs._members(by_row, rows),
        "cols_of": motifs._members(by_col, cols),
        "byte_rows": byte_rows,
        "byte_cols": motifs._byte_columns(by_col, rows, cols),
    }


def overlap_sum(overlaps) -> int:
    return sum(comb(int(m), 2) for m in np.ravel(overlaps))


def test_every_overlap_method_gives_the_matrix_formula():
    """Bi-fan and bi-parallel sums by every method `_count` may choose (popcounts of either
    side's bit sets, walks over either side's lists, byte sums by columns, forwards and back)
    equal Σ C(overlap, 2) from matrix products, across 64-node words, widths that are not whole
    words of bytes, and overlaps of 255 (the byte counters' largest)."""
    rng = np.random.default_rng(8)
    cases = [(rng.integers(1, 140, 3), density) for density in (0.03, 0.2, 0.6) for _ in range(4)]
    cases += [((255, 2, 3), 1.0), ((3, 255, 9), 1.0)]
    for sizes, density in cases:
        first = rng.random(sizes[:2]) < density
        second = rng.random(sizes[1:]) < density
        x, y = layer_pair_kernels(first), layer_pair_kernels(second)
        cols_together = first.T.astype(np.int64) @ first
        bifan = overlap_sum(cols_together[np.triu_indices(sizes[1], 1)])
        assert motifs._overlaps_dense(x["by_row"], x["by_row"], True) == bifan
        assert motifs._overlaps_dense(x["by_col"], x["by_col"], True) == bifan
        assert motifs._overlaps_sparse(x["rows_of"], x["cols_of"], sizes[0], True) == bifan
        assert motifs._overlaps_sparse(x["cols_of"], x["rows_of"], sizes[1], True) == bifan
        assert motifs._overlaps_summed(x["cols_of"], x["byte_rows"], sizes[1], True) == bifan
        biparallel = overlap_sum(first.astype(np.int64) @ second)
        assert motifs._overlaps_dense(x["by_row"], y["by_col"], False) == biparallel
        assert motifs._overlaps_sparse(x["rows_of"], y["rows_of"], sizes[2], False) == biparallel
        back = motifs._overlaps_summed(y["cols_of"], x["byte_cols"], sizes[0], False)
        assert motifs._overlaps_summed(x["rows_of"], y["byte_rows"], sizes[2], False) == biparallel
        assert back == biparallel, (sizes, density)


def test_counts_of_complete_graphs_by_hand():
    """Hand counts of complete layered graphs 2-2-2 and 2-3-3-2; keys are MOTIFS, values int."""
    # 2-2-2: 4 + 4 edges; diverging2: the 4 nodes with out-degree 2, one pair each;
    # converging2 likewise; chain2: each middle node 2 in × 2 out = 4, twice; no node has
    # degree 3 and there are only 3 layers; bi-fans: one per layer pair (2 × 2 complete);
    # bi-parallels: each (first, last) pair has 2 paths, one pair of them: 2 × 2.
    counts = count([np.ones((2, 2), bool), np.ones((2, 2), bool)])
    assert list(counts) == list(MOTIFS)
    assert all(type(n) is int for n in counts.values())
    assert counts == dict(
        edges=8,
        diverging2=4,
        converging2=4,
        chain2=8,
        diverging3=0,
        converging3=0,
        chain3=0,
        bifan=2,
        biparallel=4,
    )
    # 2-3-3-2: 6 + 9 + 6 edges; diverging2: 2·C(3,2) + 3·C(3,2) + 3·C(2,2) = 6 + 9 + 3;
    # converging2 mirrored; chain2: 3 nodes 2 in × 3 out + 3 nodes 3 in × 2 out = 18 + 18;
    # diverging3: 2 + 3 nodes with out-degree 3; converging3 mirrored; chain3: 2·3·3·2 paths;
    # bi-fans: C(2,2)·C(3,2) + C(3,2)·C(3,2) + C(3,2)·C(2,2) = 3 + 9 + 3; bi-parallels:
    # 6 (first, third) pairs with 3 paths, C(3,2) = 3 each, twice: 18 + 18.
    sizes = [2, 3, 3, 2]
    counts = count([np.ones(shape, bool) for shape in itertools.pairwise(sizes)])
    assert counts == dict(
        edges=21,
        diverging2=18,
        converging2=18,
        chain2=36,
        diverging3=5,
        converging3=5,
        chain3=36,
        bifan=15,
        biparallel=36,
    )


def test_flatten_round_trip():
    """unflatten(flatten(g)) is g, empty layers included."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        masks, _ = random_graph(rng)
        assert same(unflatten(*flatten(masks)), masks)


# dead nodes


def test_live_biased_node_without_input_stays():
    """A hidden node with a bias and an output but no input stays; without the bias it goes,
    and the output loses its edge from it."""
    masks = [np.array([[True, False]]), np.array([[True], [True]])]  # h1 has no input
    assert same(live(masks, [np.array([False, True]), np.array([False])]), masks)
    gone = live(masks, [np.array([True, False]), np.array([True])])
    assert same(gone, [masks[0], np.array([[True], [False]])])
    assert same(live(masks), gone)


def test_live_cascades_from_outputs_and_inputs():
    """Removing a node's only output target kills it too, and a node fed only by a dead one
    dies without a bias; inputs and outputs stay (shapes kept) but lose their edges to dead
    nodes. `live` does not change its arguments."""
    # input → h1a → h2a (no output); input → h1b → h2b → output: h2a, then h1a, die
    masks = [
        np.array([[True, True]]),
        np.array([[True, False], [False, True]]),
        np.array([[False], [True]]),
    ]
    original = [mask.copy() for mask in masks]
    expected = [
        np.array([[False, True]]),
        np.array([[False, False], [False, True]]),
        np.array([[False], [True]]),
    ]
    assert same(live(masks, all_biased(masks)), expected)
    assert same(masks, original)
    # input 0 has no edge: h1a (its only input would be input 0) has no input and no bias, so
    # h1a dies; h2a, fed only by h1a, dies too, and the output loses its edge from h2a
    masks = [
        np.array([[False, False], [False, True]]),
        np.array([[True, False], [False, True]]),
        np.array([[True], [True]]),
    ]
    expected = [masks[0], np.array([[False, False], [False, True]]), np.array([[False], [True]])]
    assert same(live(masks), expected)
    # with a bias on h2a only, h1a still dies but h2a stays
    bias = [np.array([False, False]), np.array([True, False]), np.array([False])]
    assert same(live(masks, bias), [masks[0], expected[1], masks[2]])


def test_live_is_idempotent_and_ignores_output_biases():
    """live(live(g)) is live(g), and the output layer's bias changes nothing."""
    rng = np.random.default_rng(11)
    for _ in range(100):
        masks, bias_masks = random_graph(rng)
        once = live(masks, bias_masks)
        assert same(live(once, bias_masks), once)
        if bias_masks is not None:
            flipped = [*bias_masks[:-1], ~bias_masks[-1]]
            assert same(live(masks, flipped), once)


# null models


def cover(rng, rows: int, cols: int, extra: int) -> np.ndarray:
    """A very sparse (rows, cols) mask: a random minimum edge cover (max(rows, cols) edges, every
    node one at least) and `extra` random edges more."""
    mask = np.zeros((rows, cols), bool)
    n = max(rows, cols)
    mask[np.arange(n) % rows, rng.permutation(n) % cols] = True
    while mask.sum() < n + extra:
        mask[rng.integers(rows), rng.integers(cols)] = True
    return mask


def null_test_graphs():
    """Live graphs for the null tests, each with a dense pair (more than half of the cells
    among its nodes with edges), a very sparse one (near a minimum edge cover) and others;
    isolated nodes, an empty pair and an empty layer among them."""
    rng = np.random.default_rng(77)
    first = rng.random((6, 8)) < 0.75
    first[0] = False  # an isolated input
    graphs = [
        [rng.random((7, 9)) < 0.7, cover(rng, 9, 8, 2), rng.random((8, 6)) < 0.35],
        [rng.random((5, 10)) < 0.2, rng.random((10, 10)) < 0.85, cover(rng, 10, 5, 1)],
        [cover(rng, 8, 8, 0), rng.random((8, 12)) < 0.5, rng.random((12, 4)) < 0.6],
        [first, cover(rng, 8, 8, 0), rng.random((8, 5)) < 0.8],
        # no input node, so an empty pair; the biased next layer stays
        [np.zeros((0, 5), bool), rng.random((5, 6)) < 0.7, cover(rng, 6, 3, 1)],
    ]
    biased = (False, True, False, True, True)
    return [
        live(masks, all_biased(masks) if bias else None)
        for masks, bias in zip(graphs, biased, strict=True)
    ]


def participants(mask):
    return mask.any(axis=1), mask.any(axis=0)


@pytest.mark.parametrize("model", NULL_MODELS)
def test_null_samples_keep_their_constraints(model):
    """Every sample keeps its model's constraints exactly, pair by pair: `er` the edge count
    and the sets of nodes with outputs and with inputs (so each keeps one, and no edge goes
    elsewhere); `degree` every node's out- and in-degree. Samples do vary."""
    for graph in null_test_graphs():
        densities, excess = [], []
        for mask in filter(np.any, graph):
            rows, cols = participants(mask)
            densities.append(mask.sum() / (rows.sum() * cols.sum()))
            excess.append(mask.sum() / max(rows.sum(), cols.sum()))
        assert max(densities) > 0.5 and min(excess) < 1.3, (densities, excess)
        samples = sample(graph, model, seeds((5, 0, 0, model == "er"), 150))
        for drawn in samples:
            assert len(drawn) == len(graph)
            for real, null in zip(graph, drawn, strict=True):
                assert null.dtype == bool and null.shape == real.shape
                if model == "er":
                    assert null.sum() == real.sum()
                    for side in (0, 1):
                        assert np.array_equal(participants(null)[side], participants(real)[side])
                else:
                    assert np.array_equal(null.sum(axis=1), real.sum(axis=1))
                    assert np.array_equal(null.sum(axis=0), real.sum(axis=0))
        assert len({key(drawn) for drawn in samples}) > 50


def realisations(rows, cols):
    """Every (len(rows), len(cols)) 0/1 matrix with these row and column sums, as bytes."""
    found = []
    for targets in itertools.product(*(itertools.combinations(range(len(cols)), d) for d in rows)):
        mask = np.zeros((len(rows), len(cols)), bool)
        for row, chosen in enumerate(targets):
            mask[row, list(chosen)] = True
        if list(mask.sum(axis=0)) == cols:
            found.append(mask.tobytes())
    return found


@pytest.mark.parametrize("rows, cols", [([2, 2, 1, 1], [2, 1, 2, 1]), ([3, 3, 2, 3], [3, 2, 3, 3])])
def test_degree_null_is_uniform_on_small_pairs(rows, cols):
    """With the default swaps the degree null visits every graph with the given degrees
    equally often (chi-square, p > 1e-4): a sparse pair and a dense one (complement swaps)."""
    support = realisations(rows, cols)
    start = np.frombuffer(support[0], bool).reshape(len(rows), len(cols))
    draws = 200 * len(support)
    frequencies = dict.fromkeys(support, 0)
    for drawn in sample([start], "degree", seeds((9, len(support)), draws)):
        frequencies[drawn[0].tobytes()] += 1  # a KeyError would be a graph off the support
    assert len(support) > 10
    assert stats.chisquare(list(frequencies.values())).pvalue > 1e-4


def test_fixed_graphs_are_their_own_samples():
    """`fixed` holds exactly when every pair is complete among its nodes with edges; then
    both nulls' samples are the graph itself and `compare` gives no z (all NaN, p 1)."""
    dense = [np.ones((3, 4), bool), np.ones((4, 5), bool), np.ones((5, 2), bool)]
    padded = [np.zeros((5, 6), bool), np.zeros((6, 4), bool)]  # with isolated nodes
    padded[0][1:4, :3] = True
    padded[1][:3, 2:] = True
    sparse = [mask.copy() for mask in dense]
    sparse[1][0, 0] = False
    assert fixed(dense) and fixed(padded) and not fixed(sparse)
    for graph in (dense, padded):
        for model in NULL_MODELS:
            assert all(same(drawn, graph) for drawn in sample(graph, model, seeds((1,), 20)))
            result = compare(graph, model, (0, 1, 2, 3), 50)
            assert isinstance(result, Significance)
            assert list(result.real) == list(count(graph).values())
            assert np.isnan(result.z).all() and not result.defined.any()
            assert (result.p == 1).all()


def test_zero_swaps_leave_the_graph():
    """With swaps=0 a degree sample is the graph itself, dense pairs included."""
    for graph in null_test_graphs():
        assert all(same(drawn, graph) for drawn in sample(graph, "degree", range(5), swaps=0))


# determinism


def test_seeds_are_prefix_stable_and_keyed():
    """seeds(key, n) is a prefix of seeds(key, m > n), uint32, distinct within a key, and
    differs when any part of the key differs."""
    base = seeds((0, 1, 2, 3), 200)
    assert base.dtype == np.uint32 and len(set(base.tolist())) == 200
    assert np.array_equal(seeds((0, 1, 2, 3), 5), base[:5])
    assert np.array_equal(seeds((0, 1, 2, 3), 10), base[:10])
    for other in [(1, 1, 2, 3), (0, 2, 2, 3), (0, 1, 3, 3), (0, 1, 2, 4), (0, 1, 2)]:
        assert not np.array_equal(seeds(other, 10), base[:10]), other


@pytest.mark.parametrize("model", NULL_MODELS)
def test_samples_depend_on_their_seed_alone(model):
    """The same seeds give the same null graphs; null_counts' rows are the counts of those
    graphs and do not depend on which seeds share a call or their order."""
    graph = null_test_graphs()[0]
    chosen = seeds((4, 2, 0, model == "er"), 12)
    drawn = sample(graph, model, chosen)
    assert all(same(a, b) for a, b in zip(drawn, sample(graph, model, chosen), strict=True))
    assert len({key(g) for g in drawn}) > 1
    counts = null_counts(graph, model, chosen)
    assert counts.shape == (12, len(MOTIFS))
    bias = all_biased(graph)
    assert [list(row) for row in counts] == [list(count(g, bias).values()) for g in drawn]
    assert np.array_equal(null_counts(graph, model, chosen[::-1]), counts[::-1])
    assert np.array_equal(null_counts(graph, model, chosen[3:8]), counts[3:8])
    for i in (0, 7, 11):
        assert np.array_equal(null_counts(graph, model, chosen[i : i + 1])[0], counts[i])
        assert same(sample(graph, model, [chosen[i]])[0], drawn[i])


@pytest.mark.parametrize("model", NULL_MODELS)
def test_compare_uses_the_keyed_samples(model):
    """compare(graph, model, key, n) is reproducible and is significance(real counts,
    null_counts of seeds(key, n)); counts the null keeps (degree functions) get no z."""
    graph = null_test_graphs()[2]
    result = compare(graph, model, (1, 2, 3, 4), 64)
    again = compare(graph, model, (1, 2, 3, 4), 64)
    expected = significance(
        np.array(list(count(graph, all_biased(graph)).values())),
        null_counts(graph, model, seeds((1, 2, 3, 4), 64)),
    )
    for field in Significance._fields:
        np.testing.assert_array_equal(getattr(result, field), getattr(again, field))
        np.testing.assert_array_equal(getattr(result, field), getattr(expected, field))
    kept = np.isin(MOTIFS, ER_FIXED if model == "er" else DEGREE_FIXED)
    assert not result.defined[kept].any() and result.defined[~kept].sum() >= 2


# significance


def exact_p(real: int, column: np.ndarray) -> Fraction:
    """(1 + #{|null − mean| ≥ |real − mean|}) / (samples + 1), in exact arithmetic."""
    mean = Fraction(int(column.sum()), len(column))
    extreme = sum(abs(int(x) - mean) >= abs(real - mean) for x in column)
    return Fraction(1 + extreme, len(column) + 1)


def test_significance_follows_its_definition():
    """z = (real − mean) / std (sample std) where the null varies, else NaN with defined False,
    never infinite; p is the empirical two-sided p-value, in (0, 1]."""
    rng = np.random.default_rng(8)
    for samples in (2, 3, 10, 101):
        null = rng.integers(0, 6, size=(samples, len(MOTIFS)))
        null[:, 0] = 4  # no variance, real equal
        null[:, 1] = 2  # no variance, real elsewhere
        real = rng.integers(0, 6, size=len(MOTIFS))
        real[0], real[1], real[2] = 4, 1000, null[:, 2].max() + 50
        result = significance(real, null)
        assert np.array_equal(result.real, real)
        np.testing.assert_allclose(result.mean, null.mean(axis=0))
        np.testing.assert_allclose(result.std, null.std(axis=0, ddof=1))
        varies = null.std(axis=0) > 0
        assert np.array_equal(result.defined, varies)
        assert np.isnan(result.z[~varies]).all()
        assert np.isfinite(result.z[varies]).all()
        expected_z = (real - null.mean(axis=0))[varies] / null.std(axis=0, ddof=1)[varies]
        np.testing.assert_allclose(result.z[varies], expected_z)
        assert ((result.p > 0) & (result.p <= 1)).all()
        for j in range(len(MOTIFS)):
            assert result.p[j] == pytest.approx(float(exact_p(int(real[j]), null[:, j])))
        assert result.p[0] == 1 and result.p[1] == 1 / (samples + 1)
    single = significance(np.arange(9), np.arange(9)[None, :] + 1)
    assert np.isnan(single.z).all() and not single.defined.any()


# calibration


CALIBRATION = {  # the motifs each null lets vary on the calibration graph
    "er": [m for m in MOTIFS if m not in ER_FIXED],
    "degree": ["chain3", "bifan", "biparallel"],
}


@pytest.mark.parametrize("model", NULL_MODELS)
def test_z_scores_are_calibrated_on_null_graphs(model):
    """For graphs drawn from the null of a sparse 6-12-12-4 graph, the z-scores against their
    own null have mean ≈ 0 and standard deviation ≈ 1 for every motif that varies, and are
    undefined for those the null fixes."""
    rng = np.random.default_rng(2)
    graph = random_live(rng, [6, 12, 12, 4], [0.3, 0.3, 0.3], biased=False)
    draws = 120
    real = sample(graph, model, seeds((1, 0, 0, model == "er"), draws))
    results = [compare(g, model, (2, d, 0, model == "er"), 200) for d, g in enumerate(real)]
    z = np.array([r.z for r in results])
    defined = np.array([r.defined for r in results])
    varying = np.isin(MOTIFS, CALIBRATION[model])
    assert not defined[:, ~varying].any()
    assert (defined[:, varying].mean(axis=0) >= 0.95).all()
    # A drawn graph and its null samples are exchangeable (for `degree` once the swaps have
    # mixed: the decorrelation test), so z has mean 0 and variance
    # 1 + O(1/200). Over 120 independent draws the mean's standard error is 1/√120 ≈ 0.09, so
    # |mean| < 0.4 is ≈ 4.4 standard errors; the std's standard error is about
    # √((kurtosis − 1) / (4·120)) ≲ 0.1 for these counts (kurtosis ≲ 6), so 0.6 < std < 1.5
    # leaves ≥ 4 standard errors each side.
    for j in np.flatnonzero(varying):
        values = z[defined[:, j], j]
        assert abs(values.mean()) < 0.4, (MOTIFS[j], values.mean())
        assert 0.6 < values.std(ddof=1) < 1.5, (MOTIFS[j], values.std(ddof=1))


# decorrelation of the degree null


STRUCTURED = {  # block structure: far more bi-fans and bi-parallels than random
    "sparse blocks": ([blocks(20, 5)], "bifan"),
    "dense anti-blocks": ([~blocks(20, 5)], "bifan"),
    "sparse, dense, sparse": ([blocks(16, 4), ~blocks(16, 4), blocks(16, 4)], "biparallel"),
}


@pytest.mark.parametrize("name", STRUCTURED)
def test_degree_null_decorrelates_within_default_swaps(name):
    """From a block-structured graph, counts of degree samples with the default swaps are
    distributed like those with 20× as many (means within 4 standard errors, stds within
    25 %) and lie far (> 10 null stds) from the start graph's."""
    graph, motif = STRUCTURED[name]
    j = MOTIFS.index(motif)
    start = count(graph)[motif]
    n = 400
    short = null_counts(graph, "degree", seeds((6, 0), n))[:, j]
    long = null_counts(graph, "degree", seeds((6, 1), n), swaps=20 * SWAPS)[:, j]
    error = np.sqrt(short.var(ddof=1) / n + long.var(ddof=1) / n)
    assert abs(short.mean() - long.mean()) < 4 * error, (short.mean(), long.mean(), error)
    assert 0.8 < short.std() / long.std() < 1.25
    assert abs(start - long.mean()) > 10 * long.std(), (start, long.mean(), long.std())
