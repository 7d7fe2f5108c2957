//! Dense linear sum assignment: the shortest augmenting path algorithm of Jonker and Volgenant in the
//! form SciPy's `linear_sum_assignment` implements it (Crouse 2016, "On implementing 2D rectangular
//! assignment algorithms", IEEE TAES 52(4), pp. 1685-1686).
//!
//! For an `n_rows × n_cols` cost matrix C with n_rows ≤ n_cols, every row is assigned a distinct
//! column so that the total Σ C[i, col(i)] is smallest (largest with `maximize`). A tall matrix is
//! solved transposed, so every column of it is assigned. Rows are added one at a time: a Dijkstra
//! search over reduced costs C[i, j] − u_i − v_j (≥ 0, the dual variables u, v kept feasible) finds
//! the cheapest path from the new row to an unassigned column; the duals are updated and the path
//! augmented. Each search is O(n_rows · n_cols), so the whole is O(n_rows² · n_cols) at worst.
//!
//! Large matrices are first solved on each row's 16 cheapest columns; the duals of that solution
//! then certify it for the whole matrix (see `solve`), or the rows they do not cover get every
//! column, and the dense algorithm takes over when that is most of the work. Random dense costs of
//! 4,096 × 4,096 take about 0.15-0.25 s here (SciPy: 1.7-3.4 s, bench/lap.py).
//!
//! +inf entries are forbidden assignments (−inf ones when maximizing); a matrix without a complete
//! assignment of finite cost is infeasible. NaN, and −inf when minimizing (+inf when maximizing), are
//! invalid: the total would not be defined or would be unbounded.

use crate::error::{Error, Result};
use std::borrow::Cow;

/// No row or column (an unassigned slot).
const NONE: usize = usize::MAX;

/// An optimal assignment: row `rows[k]` goes to column `cols[k]`; `rows` is ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Assigned row indices, ascending (all rows when n_rows ≤ n_cols).
    pub rows: Vec<usize>,
    /// The column of each row in `rows` (all columns when n_cols < n_rows).
    pub cols: Vec<usize>,
}

/// Solves the linear sum assignment problem for a row-major `n_rows × n_cols` matrix `cost`.
///
/// Same semantics as `scipy.optimize.linear_sum_assignment(cost, maximize)`: min(n_rows, n_cols)
/// pairs, rows ascending; an empty matrix gives empty output.
///
/// # Errors
/// [`Error::InvalidArgument`] when `cost.len() != n_rows * n_cols`, when an entry is NaN or
/// unbounded (−inf minimizing, +inf maximizing), or when the matrix is infeasible.
pub fn linear_sum_assignment(
    cost: &[f64],
    n_rows: usize,
    n_cols: usize,
    maximize: bool,
) -> Result<Assignment> {
    let size = n_rows.checked_mul(n_cols);
    if size != Some(cost.len()) {
        return Err(Error::InvalidArgument(format!(
            "cost matrix of {} entries is not {n_rows} x {n_cols}",
            cost.len()
        )));
    }
    check_entries(cost, n_cols, maximize)?;
    if cost.is_empty() {
        return Ok(Assignment { rows: Vec::new(), cols: Vec::new() });
    }
    let transpose = n_cols < n_rows;
    let work = prepared(cost, n_rows, n_cols, transpose, maximize);
    let (nr, nc) = if transpose { (n_cols, n_rows) } else { (n_rows, n_cols) };
    let col4row = solve(&work, nr, nc, CANDIDATES)?;
    Ok(output(col4row, transpose))
}

/// Refuses NaN entries and unbounded ones (−inf minimizing, +inf maximizing), naming the first.
fn check_entries(cost: &[f64], n_cols: usize, maximize: bool) -> Result<()> {
    let unbounded = if maximize { f64::INFINITY } else { f64::NEG_INFINITY };
    let Some(k) = cost.iter().position(|&c| c.is_nan() || c == unbounded) else { return Ok(()) };
    let (i, j) = (k / n_cols.max(1), k % n_cols.max(1));
    if cost[k].is_nan() {
        return Err(Error::InvalidArgument(format!("cost matrix contains NaN (at row {i}, column {j})")));
    }
    let (bad, forbid) = if maximize { ("+inf", "-inf") } else { ("-inf", "+inf") };
    Err(Error::InvalidArgument(format!(
        "cost matrix contains {bad} (at row {i}, column {j}), which makes the optimum unbounded; \
         use {forbid} to forbid an assignment"
    )))
}

/// The matrix the solver works on: wide (transposed when tall), negated when maximizing. Borrowed
/// when neither applies.
fn prepared(cost: &[f64], n_rows: usize, n_cols: usize, transpose: bool, maximize: bool) -> Cow<'_, [f64]> {
    let sign = if maximize { -1.0 } else { 1.0 };
    if transpose {
        let mut t = vec![0.0; cost.len()];
        for (i, row) in cost.chunks_exact(n_cols).enumerate() {
            for (j, &c) in row.iter().enumerate() {
                t[j * n_rows + i] = sign * c;
            }
        }
        Cow::Owned(t)
    } else if maximize {
        Cow::Owned(cost.iter().map(|&c| -c).collect())
    } else {
        Cow::Borrowed(cost)
    }
}

/// Rows ascending with their columns, from the solved (possibly transposed) problem's `col4row`.
fn output(col4row: Vec<usize>, transpose: bool) -> Assignment {
    if transpose {
        let mut pairs: Vec<(usize, usize)> = col4row.into_iter().enumerate().map(|(c, r)| (r, c)).collect();
        pairs.sort_unstable();
        let (rows, cols) = pairs.into_iter().unzip();
        Assignment { rows, cols }
    } else {
        Assignment { rows: (0..col4row.len()).collect(), cols: col4row }
    }
}

/// Candidate columns per row in the sparse first pass (the smallest costs of each row).
const CANDIDATES: usize = 16;
/// Sparse passes before the dense solver takes over.
const MAX_ROUNDS: usize = 3;

/// The infeasibility error.
fn infeasible() -> Error {
    Error::InvalidArgument(
        "cost matrix is infeasible: no complete assignment avoids the forbidden (infinite) entries".into(),
    )
}

/// Solves the wide `nr × nc` problem; returns the column of each row.
///
/// Fast path, exact: solve on each row's `k` cheapest columns (the others taken as +inf), then check
/// the duals on the whole matrix. Every left-out entry of row i costs at least t_i (the row's k-th
/// smallest), so if t_i − u_i − max_j v_j ≥ 0 no left-out entry has a negative reduced cost, and the
/// assignment is optimal for the full matrix (LP duality: u, v are feasible and complementary).
/// Rows that fail (or block the sparse search) get all their columns and the pass is repeated; when
/// too many rows need that, the dense algorithm runs on the full matrix.
fn solve(cost: &[f64], nr: usize, nc: usize, k: usize) -> Result<Vec<usize>> {
    if nc <= 4 * k {
        return dense(cost, nr, nc);
    }
    let mut graph = Candidates::new(cost, nr, nc, k);
    if graph.distinct_columns(nc) < nr {
        // The candidates cannot assign every row (Hall): rows share their cheap columns.
        return dense(cost, nr, nc);
    }
    for _ in 0..MAX_ROUNDS {
        let mut solver = Solver::new(cost, nr, nc);
        let (widen, event) = match solver.solve_sparse(&graph) {
            Ok(()) => (solver.violations(&graph), Event::Violations),
            Err(blocked) if blocked.iter().all(|&i| graph.dense[i]) => return Err(infeasible()),
            Err(blocked) => (blocked, Event::Blocked),
        };
        if widen.is_empty() {
            return Ok(solver.col4row);
        }
        count(event);
        graph.widen(&widen);
        if graph.dense.iter().filter(|&&d| d).count() > nr / 16 {
            break;
        }
    }
    count(Event::Fallback);
    dense(cost, nr, nc)
}

/// What the sparse pass did (counted in tests, to check that they reach every branch).
#[derive(Clone, Copy)]
enum Event {
    /// Rows were widened for left-out entries of negative reduced cost.
    Violations,
    /// Rows were widened for a search that reached no free column.
    Blocked,
    /// The dense algorithm took over.
    Fallback,
}

#[cfg(test)]
thread_local! {
    static EVENTS: std::cell::Cell<[usize; 3]> = const { std::cell::Cell::new([0; 3]) };
}

/// Counts `event` (in tests: `EVENTS`).
fn count(event: Event) {
    #[cfg(test)]
    EVENTS.with(|e| {
        let mut counts = e.get();
        counts[event as usize] += 1;
        e.set(counts);
    });
    let _ = event;
}

/// SciPy's algorithm on the full matrix.
fn dense(cost: &[f64], nr: usize, nc: usize) -> Result<Vec<usize>> {
    let mut solver = Solver::new(cost, nr, nc);
    for row in 0..nr {
        let (sink, min_val) = solver.search_dense(row).ok_or_else(infeasible)?;
        solver.update_duals(row, min_val);
        solver.augment(row, sink);
    }
    Ok(solver.col4row)
}

/// Each row's candidate columns: its `k` smallest finite costs, or all columns for a dense row.
struct Candidates {
    /// Row i's candidates are cols[offsets[i]..offsets[i + 1]] (empty for a dense row).
    offsets: Vec<usize>,
    cols: Vec<usize>,
    costs: Vec<f64>,
    /// Every left-out entry of row i costs at least threshold[i] (+inf: none is finite).
    threshold: Vec<f64>,
    dense: Vec<bool>,
}

impl Candidates {
    fn new(cost: &[f64], nr: usize, nc: usize, k: usize) -> Self {
        let mut graph = Candidates {
            offsets: Vec::with_capacity(nr + 1),
            cols: Vec::with_capacity(nr * k),
            costs: Vec::with_capacity(nr * k),
            threshold: Vec::with_capacity(nr),
            dense: vec![false; nr],
        };
        graph.offsets.push(0);
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
        for row in cost.chunks_exact(nc) {
            smallest(row, k, &mut best);
            let full = best.len() == k;
            graph.threshold.push(if full {
                best.last().map_or(f64::INFINITY, |b| b.0)
            } else {
                f64::INFINITY
            });
            graph.cols.extend(best.iter().map(|b| b.1));
            graph.costs.extend(best.iter().map(|b| b.0));
            graph.offsets.push(graph.cols.len());
        }
        graph
    }

    /// How many columns are a candidate of some row.
    fn distinct_columns(&self, nc: usize) -> usize {
        let mut seen = vec![false; nc];
        self.cols.iter().for_each(|&j| seen[j] = true);
        seen.iter().filter(|&&s| s).count()
    }

    /// Gives the rows `rows` every column.
    fn widen(&mut self, rows: &[usize]) {
        for &i in rows {
            self.dense[i] = true;
            self.threshold[i] = f64::INFINITY;
        }
    }

    /// Row i's candidate columns and their costs.
    fn row(&self, i: usize) -> (&[usize], &[f64]) {
        let span = self.offsets[i]..self.offsets[i + 1];
        (&self.cols[span.clone()], &self.costs[span])
    }
}

/// The `k` smallest finite entries of `row` as (cost, column), ascending, into `best`.
fn smallest(row: &[f64], k: usize, best: &mut Vec<(f64, usize)>) {
    best.clear();
    let mut bound = f64::INFINITY;
    for (j, &c) in row.iter().enumerate() {
        if c < bound || (best.len() < k && c < f64::INFINITY) {
            let at = best.partition_point(|b| b.0 <= c);
            best.insert(at, (c, j));
            best.truncate(k);
            if best.len() == k {
                bound = best[k - 1].0;
            }
        }
    }
}

/// A heap entry: distance, whether the column is assigned (free columns first among ties), column.
#[derive(PartialEq)]
struct Entry(f64, bool, usize);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` pops the smallest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1)).then(other.2.cmp(&self.2))
    }
}

/// The state of the shortest augmenting path algorithm on a wide `nr × nc` matrix (nr ≤ nc).
struct Solver<'a> {
    cost: &'a [f64],
    nc: usize,
    /// Dual variables of rows and columns.
    u: Vec<f64>,
    v: Vec<f64>,
    /// Shortest path cost to each column in the current search.
    dist: Vec<f64>,
    /// The row preceding each column on its shortest path.
    path: Vec<usize>,
    col4row: Vec<usize>,
    row4col: Vec<usize>,
    /// Columns not yet scanned in the current search (dense search).
    remaining: Vec<usize>,
    /// Whether each column was scanned in the current search (sparse search).
    scanned: Vec<bool>,
    /// Reached columns by distance (sparse search; stale entries are skipped).
    heap: std::collections::BinaryHeap<Entry>,
    /// Rows and columns scanned in the current search, in order.
    rows_seen: Vec<usize>,
    cols_seen: Vec<usize>,
}

impl<'a> Solver<'a> {
    fn new(cost: &'a [f64], nr: usize, nc: usize) -> Self {
        Solver {
            cost,
            nc,
            u: vec![0.0; nr],
            v: vec![0.0; nc],
            dist: vec![f64::INFINITY; nc],
            path: vec![NONE; nc],
            col4row: vec![NONE; nr],
            row4col: vec![NONE; nc],
            remaining: Vec::with_capacity(nc),
            scanned: vec![false; nc],
            heap: std::collections::BinaryHeap::new(),
            rows_seen: Vec::with_capacity(nr),
            cols_seen: Vec::with_capacity(nc),
        }
    }

    fn cost_row(&self, i: usize) -> &'a [f64] {
        &self.cost[i * self.nc..(i + 1) * self.nc]
    }

    /// Clears the search state.
    fn reset(&mut self) {
        self.dist.fill(f64::INFINITY);
        self.rows_seen.clear();
        self.cols_seen.clear();
    }

    /// Dijkstra from `start` over reduced costs until an unassigned column is reached (SciPy's
    /// search); returns that column and its path cost, None when no column can be reached.
    fn search_dense(&mut self, start: usize) -> Option<(usize, f64)> {
        self.reset();
        // Reverse order: a constant matrix gets the identity assignment (SciPy #11602).
        self.remaining.clear();
        self.remaining.extend((0..self.nc).rev());
        let (mut i, mut min_val) = (start, 0.0);
        loop {
            self.rows_seen.push(i);
            let (index, lowest) = self.scan_row(i, min_val);
            if lowest == f64::INFINITY {
                return None;
            }
            min_val = lowest;
            let j = self.remaining.swap_remove(index);
            self.cols_seen.push(j);
            match self.row4col[j] {
                NONE => return Some((j, min_val)),
                next => i = next,
            }
        }
    }

    /// Relaxes every remaining column through row `i`; returns the position in `remaining` of the
    /// closest column (an unassigned one among ties) and its distance.
    #[inline]
    fn scan_row(&mut self, i: usize, min_val: f64) -> (usize, f64) {
        let (nc, ui) = (self.nc, self.u[i]);
        let row = &self.cost[i * nc..(i + 1) * nc];
        // Slices of one length nc: one bound check per column instead of five.
        let (v, row4col) = (&self.v[..nc], &self.row4col[..nc]);
        let (dist, path) = (&mut self.dist[..nc], &mut self.path[..nc]);
        let (mut index, mut lowest) = (0, f64::INFINITY);
        for (it, &j) in self.remaining.iter().enumerate() {
            if j >= nc {
                continue; // never: `remaining` holds columns
            }
            let r = min_val + row[j] - ui - v[j];
            if r < dist[j] {
                path[j] = i;
                dist[j] = r;
            }
            let d = dist[j];
            if d < lowest || (d == lowest && row4col[j] == NONE) {
                lowest = d;
                index = it;
            }
        }
        (index, lowest)
    }

    /// Adds the rows one by one on the candidate graph. Err: the rows of a search that reached no
    /// unassigned column.
    fn solve_sparse(&mut self, graph: &Candidates) -> std::result::Result<(), Vec<usize>> {
        for row in 0..self.u.len() {
            let Some((sink, min_val)) = self.search_sparse(row, graph) else {
                return Err(std::mem::take(&mut self.rows_seen));
            };
            self.update_duals(row, min_val);
            self.augment(row, sink);
        }
        Ok(())
    }

    /// [`Self::search_dense`] on the candidate graph, with a heap of reached columns.
    fn search_sparse(&mut self, start: usize, graph: &Candidates) -> Option<(usize, f64)> {
        self.reset();
        self.heap.clear();
        let (mut i, mut min_val) = (start, 0.0);
        let found = loop {
            self.rows_seen.push(i);
            if graph.dense[i] {
                let row = self.cost_row(i);
                self.relax_columns(i, min_val, row.iter().copied().enumerate());
            } else {
                let (cols, costs) = graph.row(i);
                self.relax_columns(i, min_val, cols.iter().copied().zip(costs.iter().copied()));
            }
            let Some(j) = self.closest() else { break None };
            min_val = self.dist[j];
            self.scanned[j] = true;
            self.cols_seen.push(j);
            match self.row4col[j] {
                NONE => break Some((j, min_val)),
                next => i = next,
            }
        };
        for &j in &self.cols_seen {
            self.scanned[j] = false;
        }
        found
    }

    /// Relaxes the unscanned `columns` through row `i`, reached at distance `min_val`.
    fn relax_columns(&mut self, i: usize, min_val: f64, columns: impl Iterator<Item = (usize, f64)>) {
        let ui = self.u[i];
        for (j, c) in columns {
            let r = min_val + c - ui - self.v[j];
            if r < self.dist[j] && !self.scanned[j] {
                self.path[j] = i;
                self.dist[j] = r;
                self.heap.push(Entry(r, self.row4col[j] != NONE, j));
            }
        }
    }

    /// Pops the closest unscanned column (skipping stale entries).
    fn closest(&mut self) -> Option<usize> {
        while let Some(Entry(d, _, j)) = self.heap.pop() {
            if !self.scanned[j] && d == self.dist[j] {
                return Some(j);
            }
        }
        None
    }

    /// Rows of `graph` with a left-out entry of negative reduced cost (empty: the solution is optimal
    /// on the full matrix).
    fn violations(&self, graph: &Candidates) -> Vec<usize> {
        let vmax = self.v.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
        let suspect = |i: &usize| graph.threshold[*i] - self.u[*i] - vmax < 0.0;
        let mut bad: Vec<usize> = (0..self.u.len()).filter(suspect).collect();
        bad.retain(|&i| {
            let (row, ui, kept) = (self.cost_row(i), self.u[i], graph.row(i).0);
            row.iter().zip(&self.v).enumerate().any(|(j, (&c, &vj))| c - ui - vj < 0.0 && !kept.contains(&j))
        });
        bad
    }

    /// Keeps the reduced costs non-negative and zero along the assignment after a search.
    fn update_duals(&mut self, start: usize, min_val: f64) {
        self.u[start] += min_val;
        for &i in self.rows_seen.iter().filter(|&&i| i != start) {
            self.u[i] += min_val - self.dist[self.col4row[i]];
        }
        for &j in &self.cols_seen {
            self.v[j] -= min_val - self.dist[j];
        }
    }

    /// Flips the assignment along the path from `sink` back to `start`.
    fn augment(&mut self, start: usize, sink: usize) {
        let mut j = sink;
        loop {
            let i = self.path[j];
            self.row4col[j] = i;
            std::mem::swap(&mut self.col4row[i], &mut j);
            if i == start {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence (splitmix64) of uniform [0, 1) numbers.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// An n_rows × n_cols matrix: uniform, or small integers (many ties), with a fraction of +inf.
        fn matrix(&mut self, n: usize, integers: bool, forbidden: f64) -> Vec<f64> {
            (0..n)
                .map(|_| {
                    let x = if integers { (self.next() * 4.0).floor() } else { self.next() * 10.0 - 5.0 };
                    if self.next() < forbidden {
                        f64::INFINITY
                    } else {
                        x
                    }
                })
                .collect()
        }
    }

    /// The smallest total over every assignment of the smaller side (None: none is finite).
    fn brute_force(cost: &[f64], nr: usize, nc: usize) -> Option<f64> {
        fn go(cost: &[f64], nr: usize, nc: usize, i: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            let (short, long) = (nr.min(nc), nr.max(nc));
            if i == short {
                *best = best.min(acc);
                return;
            }
            for j in 0..long {
                if !used[j] {
                    let c = if nr <= nc { cost[i * nc + j] } else { cost[j * nc + i] };
                    used[j] = true;
                    go(cost, nr, nc, i + 1, used, acc + c, best);
                    used[j] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        go(cost, nr, nc, 0, &mut vec![false; nr.max(nc)], 0.0, &mut best);
        (best < f64::INFINITY).then_some(best)
    }

    /// Checks that `a` is a valid assignment of a `nr × nc` matrix and returns its total.
    fn total(cost: &[f64], nr: usize, nc: usize, a: &Assignment) -> f64 {
        assert_eq!(a.rows.len(), nr.min(nc));
        assert_eq!(a.cols.len(), nr.min(nc));
        assert!(a.rows.windows(2).all(|w| w[0] < w[1]), "rows not ascending: {:?}", a.rows);
        let mut cols = a.cols.clone();
        cols.sort_unstable();
        cols.dedup();
        assert_eq!(cols.len(), a.cols.len(), "a column used twice: {:?}", a.cols);
        assert!(a.rows.iter().all(|&i| i < nr) && a.cols.iter().all(|&j| j < nc));
        a.rows.iter().zip(&a.cols).map(|(&i, &j)| cost[i * nc + j]).sum()
    }

    fn lsa(cost: &[f64], nr: usize, nc: usize) -> Assignment {
        linear_sum_assignment(cost, nr, nc, false).unwrap()
    }

    fn message(err: Error) -> String {
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        err.to_string()
    }

    #[test]
    fn hand_cases() {
        let identity = [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        assert_eq!(lsa(&identity, 3, 3), Assignment { rows: vec![0, 1, 2], cols: vec![0, 1, 2] });
        let anti = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 3.0, 6.0, 9.0];
        assert_eq!(lsa(&anti, 3, 3).cols, vec![2, 1, 0]);
        // SciPy's example.
        let scipy = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        let a = lsa(&scipy, 3, 3);
        assert_eq!((a.cols.clone(), total(&scipy, 3, 3, &a)), (vec![1, 0, 2], 5.0));
        // All equal: the identity, as SciPy gives.
        assert_eq!(lsa(&[7.0; 16], 4, 4).cols, vec![0, 1, 2, 3]);
        assert_eq!(lsa(&[7.0; 12], 3, 4).cols, vec![0, 1, 2]);
        assert_eq!(lsa(&[3.5], 1, 1), Assignment { rows: vec![0], cols: vec![0] });
        assert_eq!(lsa(&[3.0, 1.0, 2.0, 1.5], 1, 4), Assignment { rows: vec![0], cols: vec![1] });
        assert_eq!(lsa(&[3.0, 1.0, 2.0, 1.5], 4, 1), Assignment { rows: vec![1], cols: vec![0] });
        let max = linear_sum_assignment(&[3.0, 1.0, 2.0, 1.5], 4, 1, true).unwrap();
        assert_eq!(max, Assignment { rows: vec![0], cols: vec![0] });
        // Tall: every column assigned, rows ascending.
        let tall = [5.0, 9.0, 1.0, 9.0, 9.0, 2.0];
        assert_eq!(lsa(&tall, 3, 2), Assignment { rows: vec![1, 2], cols: vec![0, 1] });
        for (nr, nc) in [(0, 0), (0, 3), (3, 0)] {
            assert_eq!(lsa(&[], nr, nc), Assignment { rows: vec![], cols: vec![] });
        }
    }

    #[test]
    fn forbidden_entries_and_errors() {
        let inf = f64::INFINITY;
        let a = lsa(&[inf, 1.0, 2.0, inf], 2, 2);
        assert_eq!(a.cols, vec![1, 0]);
        let max = linear_sum_assignment(&[-inf, 1.0, 2.0, -inf], 2, 2, true).unwrap();
        assert_eq!(max.cols, vec![1, 0]);
        let infeasible = message(linear_sum_assignment(&[inf, 1.0, inf, 2.0], 2, 2, false).unwrap_err());
        assert!(infeasible.contains("cost matrix is infeasible"), "{infeasible}");
        assert!(linear_sum_assignment(&[inf; 6], 2, 3, false).is_err());
        let nan = message(linear_sum_assignment(&[1.0, 2.0, f64::NAN, 0.0], 2, 2, false).unwrap_err());
        assert!(nan.contains("NaN (at row 1, column 0)"), "{nan}");
        let minus = message(linear_sum_assignment(&[1.0, -inf], 1, 2, false).unwrap_err());
        assert!(minus.contains("-inf (at row 0, column 1)") && minus.contains("use +inf"), "{minus}");
        let plus = message(linear_sum_assignment(&[inf, 1.0], 1, 2, true).unwrap_err());
        assert!(plus.contains("+inf (at row 0, column 0)"), "{plus}");
        let shape = message(linear_sum_assignment(&[1.0, 2.0, 3.0], 2, 2, false).unwrap_err());
        assert!(shape.contains("not 2 x 2"), "{shape}");
        assert!(linear_sum_assignment(&[], usize::MAX, 2, false).is_err());
    }

    /// Every shape up to 7 × 7 (square) and 5 × 7 / 7 × 5, uniform and tied integer costs, some
    /// forbidden entries, minimizing and maximizing, through the dense solver and the sparse pass
    /// (one candidate per row, so that rows are widened and the dense fallback runs).
    #[test]
    fn random_matrices_match_brute_force() {
        let mut rng = Rng(7);
        let mut shapes: Vec<(usize, usize)> = (1..=7).map(|n| (n, n)).collect();
        shapes.extend((1..=5).flat_map(|r| (r + 1..=7).flat_map(move |c| [(r, c), (c, r)])));
        for &(nr, nc) in &shapes {
            for trial in 0..12 {
                let cost = rng.matrix(nr * nc, trial % 2 == 1, if trial % 3 == 2 { 0.3 } else { 0.0 });
                let best = brute_force(&cost, nr, nc);
                let Some(best) = best else {
                    assert!(linear_sum_assignment(&cost, nr, nc, false).is_err());
                    continue;
                };
                let a = lsa(&cost, nr, nc);
                assert!((total(&cost, nr, nc, &a) - best).abs() < 1e-9, "{nr}x{nc} trial {trial}");
                let wide =
                    if nr <= nc { cost.clone() } else { prepared(&cost, nr, nc, true, false).into_owned() };
                let (r, c) = (nr.min(nc), nr.max(nc));
                let cols = solve(&wide, r, c, 1).unwrap();
                let sparse = Assignment { rows: (0..r).collect(), cols };
                assert!((total(&wide, r, c, &sparse) - best).abs() < 1e-9, "sparse {nr}x{nc} trial {trial}");
                let negated: Vec<f64> = cost.iter().map(|&x| -x).collect();
                let m = linear_sum_assignment(&negated, nr, nc, true).unwrap();
                assert!((total(&cost, nr, nc, &m) - best).abs() < 1e-9, "maximize {nr}x{nc} trial {trial}");
            }
        }
    }

    /// The sparse pass with its certificate gives the dense algorithm's optimum on larger matrices
    /// (exactly for integer costs, where ties abound).
    #[test]
    fn sparse_pass_matches_the_dense_algorithm() {
        let mut rng = Rng(11);
        for (nr, nc, integers, forbidden) in
            [(300, 300, false, 0.0), (200, 350, true, 0.0), (256, 256, true, 0.2), (150, 400, false, 0.5)]
        {
            let cost = rng.matrix(nr * nc, integers, forbidden);
            let dense_cols = dense(&cost, nr, nc).unwrap();
            let want = total(&cost, nr, nc, &Assignment { rows: (0..nr).collect(), cols: dense_cols });
            for k in [1, 2, CANDIDATES] {
                let got = Assignment { rows: (0..nr).collect(), cols: solve(&cost, nr, nc, k).unwrap() };
                let got = total(&cost, nr, nc, &got);
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "{nr}x{nc} k={k}: {got} != {want}"
                );
                if integers {
                    assert_eq!(got, want);
                }
            }
        }
    }

    /// Small candidate sets on wide matrices: rows are widened for violations and for blocked
    /// searches, the dense algorithm takes over, and every time the optimum is the dense one's.
    #[test]
    fn every_branch_of_the_sparse_pass_gives_the_optimum() {
        let mut rng = Rng(5);
        EVENTS.with(|e| e.set([0; 3]));
        for trial in 0..60 {
            let (nr, nc) = (20 + trial % 30, 160);
            let cost = rng.matrix(nr * nc, trial % 2 == 1, if trial % 3 == 0 { 0.4 } else { 0.0 });
            let want = dense(&cost, nr, nc)
                .map(|cols| total(&cost, nr, nc, &Assignment { rows: (0..nr).collect(), cols }));
            for k in [1, 2, 3] {
                let got = solve(&cost, nr, nc, k)
                    .map(|cols| total(&cost, nr, nc, &Assignment { rows: (0..nr).collect(), cols }));
                match (&got, &want) {
                    (Ok(got), Ok(want)) => {
                        assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "trial {trial} k={k}")
                    }
                    _ => assert_eq!(got.is_err(), want.is_err(), "trial {trial} k={k}"),
                }
            }
        }
        let events = EVENTS.with(|e| e.get());
        assert!(events.iter().all(|&n| n > 0), "violations, blocked, fallback: {events:?}");
    }

    /// Rows whose cheap columns collide block the sparse search; an infeasible matrix is still found.
    #[test]
    fn blocked_sparse_searches_widen_rows() {
        let (n, inf) = (80, f64::INFINITY);
        // Every row's cheapest columns are 0..4: the candidate graph has no complete assignment.
        let cost: Vec<f64> = (0..n * n).map(|k| if k % n < 4 { 0.0 } else { 1.0 + (k % 7) as f64 }).collect();
        let a = lsa(&cost, n, n);
        assert_eq!(total(&cost, n, n, &a), dense_total(&cost, n));
        // Two rows can use only column 0: blocked twice, then infeasible (not the dense fallback).
        let mut rng = Rng(3);
        let mut blocked = rng.matrix(n * n, false, 0.0);
        for j in 1..n {
            blocked[j] = inf;
            blocked[n + j] = inf;
        }
        EVENTS.with(|e| e.set([0; 3]));
        assert!(message(linear_sum_assignment(&blocked, n, n, false).unwrap_err()).contains("infeasible"));
        assert_eq!(EVENTS.with(|e| e.get()), [0, 1, 0]);
    }

    /// The total of the dense algorithm's assignment of a square matrix.
    fn dense_total(cost: &[f64], n: usize) -> f64 {
        let cols = dense(cost, n, n).unwrap();
        total(cost, n, n, &Assignment { rows: (0..n).collect(), cols })
    }
}
