"""Shapley contributions against the sealed background, and what-if curves.

A feature's contribution is its interventional Shapley value: the value of a coalition S of
features is the model's mean output (weighted over the background rows) when the features in
S take the record's values and the others the background row's. So base + sum(contributions)
= prediction exactly, and the base is the model's mean output on the background.

Up to EXACT_MAX_FEATURES features every coalition is evaluated, all in one engine call per
record; above that, antithetic pairs of random feature orders estimate the values, and the
standard error across pairs is reported. Only numpy: this runs in the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial

import numpy as np

from tabship.background import Background
from tabship.schema import Batch, Schema

EXACT_MAX_FEATURES = 12
# Antithetic pairs of feature orders drawn per record above EXACT_MAX_FEATURES, fewer (down
# to MIN_PAIRS) for very wide models, so that a record costs at most RECORD_ROWS engine rows.
PERMUTATION_PAIRS = 32
MIN_PAIRS = 4
RECORD_ROWS = 100_000
# Records are explained in groups of about this many engine rows.
CHUNK_ROWS = 65_536
# Cells (rows x input columns) handed to one engine call, which bounds its memory; a record
# of up to 12 features fits one call with every coalition.
ENGINE_CELLS = 2_000_000
# Engine rows one request may cost; the per-request record limit is this over a record's cost.
REQUEST_ROWS = 1_000_000
# Model output for engine columns: (rows, outputs) floats, a column per class or one value.
Outputs = Callable[[dict[str, np.ndarray], int], np.ndarray]


@dataclass(frozen=True)
class Explanation:
    """Contributions of each feature for each record and each model output.

    Arrays: prediction and base (records, outputs), contributions and error
    (records, features, outputs); error is zero when the values are exact.
    """

    method: str
    prediction: np.ndarray
    base: np.ndarray
    contributions: np.ndarray
    error: np.ndarray


def shapley_weights(players: int) -> np.ndarray:
    """(players, 2^players): Shapley values are coalition values times this, transposed.

    Coalition c holds player i when bit i of c is set. The value of i is the sum over
    coalitions S without i of |S|!(n-|S|-1)!/n! * (v(S + i) - v(S)).
    """
    count = 1 << players
    codes = np.arange(count)
    members = (codes[:, None] >> np.arange(players)[None, :]) & 1
    sizes = members.sum(axis=1)
    share = np.array(
        [factorial(s) * factorial(players - s - 1) / factorial(players) for s in range(players)]
        + [0.0]
    )
    # Player i in S: + share(|S| - 1) (S is "S' + i"); i not in S: - share(|S|).
    with_i = share[np.maximum(sizes - 1, 0)][:, None]
    without_i = share[np.minimum(sizes, players)][:, None]
    matrix = np.where(members == 1, with_i, -without_i)
    return np.ascontiguousarray(matrix.T)


def exact_masks(players: int) -> np.ndarray:
    """Every coalition as a (2^players, players) boolean mask."""
    codes = np.arange(1 << players)
    return ((codes[:, None] >> np.arange(players)[None, :]) & 1).astype(bool)


def permutation_masks(players: int, pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(2 * pairs, players): feature orders, each followed by its reverse (antithetic)."""
    orders = np.array([rng.permutation(players) for _ in range(pairs)])
    both = np.empty((2 * pairs, players), dtype=np.int64)
    both[0::2], both[1::2] = orders, orders[:, ::-1]
    return both


def _prefix_masks(orders: np.ndarray) -> np.ndarray:
    """(orders, players + 1, players): the coalition after each step of each order."""
    count, players = orders.shape
    rank = np.empty_like(orders)
    rank[np.arange(count)[:, None], orders] = np.arange(players)[None, :]
    steps = np.arange(players + 1)[:, None]
    return rank[:, None, :] < steps[None, :, :]


class Explainer:
    """Explains validated batches of one model against its sealed background."""

    def __init__(
        self,
        schema: Schema,
        background: Background,
        outputs: Outputs,
        exact_max: int = EXACT_MAX_FEATURES,
        pairs: int | None = None,
    ) -> None:
        self.schema = schema
        self.background = background
        self.outputs = outputs
        self.players = len(schema.features)
        self.exact = self.players <= exact_max
        per_pair = 2 * (self.players + 1) * background.rows
        self.pairs = pairs or max(MIN_PAIRS, min(PERMUTATION_PAIRS, RECORD_ROWS // per_pair))
        self._per_call = max(1, ENGINE_CELLS // max(1, len(schema.inputs)))
        self._bg = background.arrays(schema)
        self._weights = np.asarray(background.weights, dtype=np.float64)
        # Which feature each engine input column belongs to (a date is several columns).
        self._owner = {name: index for index, f in enumerate(schema.features) for name in f.inputs}
        if self.exact:
            self._masks = exact_masks(self.players)
            self._matrix = shapley_weights(self.players)

    @property
    def method(self) -> str:
        """'exact' or 'permutation' (sampled, with an error estimate)."""
        return "exact" if self.exact else "permutation"

    @property
    def coalitions(self) -> int:
        """Coalitions evaluated per record."""
        if self.exact:
            return 1 << self.players
        return 2 * self.pairs * (self.players + 1)

    @property
    def rows_per_record(self) -> int:
        """Engine rows one record costs: coalitions times background rows."""
        return self.coalitions * self.background.rows

    @property
    def max_records(self) -> int:
        """Records one request may explain (at least one)."""
        return max(1, REQUEST_ROWS // self.rows_per_record)

    def explain(self, batch: Batch) -> Explanation:
        """Contributions for every record of a validated batch."""
        per_call = max(1, CHUNK_ROWS // self.rows_per_record)
        parts = [
            self._explain_rows(batch, start, min(start + per_call, batch.rows))
            for start in range(0, batch.rows, per_call)
        ]
        return Explanation(
            method=self.method,
            prediction=np.concatenate([p.prediction for p in parts]),
            base=np.concatenate([p.base for p in parts]),
            contributions=np.concatenate([p.contributions for p in parts]),
            error=np.concatenate([p.error for p in parts]),
        )

    def _explain_rows(self, batch: Batch, start: int, stop: int) -> Explanation:
        if self.exact:
            values = self._coalition_values(batch, start, stop, self._masks)
            contributions = np.einsum("ic,nco->nio", self._matrix, values)
            error = np.zeros_like(contributions)
            return Explanation("exact", values[:, -1], values[:, 0], contributions, error)
        # A fixed seed: the same record gets the same answer every time it is asked.
        rng = np.random.default_rng(start)
        orders = permutation_masks(self.players, self.pairs, rng)
        masks = _prefix_masks(orders).reshape(-1, self.players)
        values = self._coalition_values(batch, start, stop, masks)
        steps = values.reshape(len(values), len(orders), self.players + 1, -1)
        gains = np.diff(steps, axis=2)  # (n, orders, step, o): the gain of each step's feature
        per_order = np.zeros_like(gains)
        index = np.arange(len(orders))[:, None]
        per_order[:, index, orders] = gains
        pair_means = 0.5 * (per_order[:, 0::2] + per_order[:, 1::2])
        contributions = pair_means.mean(axis=1)
        error = pair_means.std(axis=1, ddof=1) / np.sqrt(self.pairs)
        return Explanation("permutation", steps[:, 0, -1], steps[:, 0, 0], contributions, error)

    def _coalition_values(
        self, batch: Batch, start: int, stop: int, masks: np.ndarray
    ) -> np.ndarray:
        """(records, coalitions, outputs): each coalition's background-weighted model output.

        The row for (record, coalition S, background row b) depends only on the features in S
        where the record and b differ: rows that coincide are sent to the engine once. With
        categories and whole numbers many features agree with some baseline row, which cuts
        the engine's rows by half or more.
        """
        records, coalitions, rows = stop - start, len(masks), self.background.rows
        mine = {name: column[start:stop, 0] for name, column in batch.columns.items()}
        picked = self._distinct(mine, masks)
        flat = np.arange(records * coalitions * rows) if picked is None else picked[0]
        parts = []
        for begin in range(0, len(flat), self._per_call):
            record, rest = np.divmod(flat[begin : begin + self._per_call], coalitions * rows)
            coalition, row = np.divmod(rest, rows)
            columns = {
                name: np.where(
                    masks[coalition, self._owner[name]], values[record], self._bg[name][row]
                ).reshape(-1, 1)
                for name, values in mine.items()
            }
            parts.append(self.outputs(columns, len(record)))
        out = np.concatenate(parts)
        if picked is not None:
            out = out[picked[1]]
        out = out.reshape(records, coalitions, rows, -1)
        weighted: np.ndarray = np.einsum("ncko,k->nco", out, self._weights)
        # Every background row of the whole coalition is the record itself: its answer as the
        # engine gives it, not a weighted mean of copies (a probability of 1.0000000000000002).
        whole = masks.all(axis=1)
        weighted[:, whole] = out[:, whole, 0]
        return weighted

    def _distinct(
        self, mine: dict[str, np.ndarray], masks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Flat indexes of the distinct engine rows and where each row's answer is, or None."""
        records, rows = len(next(iter(mine.values()))), self.background.rows
        if self.players > 40 or records * rows >= 1 << 22:
            return None  # the packed keys below would not fit 63 bits
        differs = np.zeros((records, rows, self.players), dtype=bool)
        for name, values in mine.items():
            left, right = values[:, None], self._bg[name][None, :]
            unequal = left != right
            if values.dtype.kind == "f":
                unequal &= ~(np.isnan(left) & np.isnan(right))
            differs[:, :, self._owner[name]] |= unequal
        bits = np.int64(1) << np.arange(self.players, dtype=np.int64)
        mask_codes = masks.astype(np.int64) @ bits
        differ_codes = differs.astype(np.int64) @ bits
        pair = np.arange(records * rows, dtype=np.int64).reshape(records, 1, rows)
        keys = (pair << self.players) | (mask_codes[None, :, None] & differ_codes[:, None, :])
        _, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
        return first, inverse
