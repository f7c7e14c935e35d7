//! From the minimum spanning tree to labels, ported step by step from
//! scikit-learn's `sklearn/cluster/_hdbscan` (`_linkage.pyx`:
//! `make_single_linkage`; `_tree.pyx`: `_condense_tree`, `_compute_stability`,
//! `_get_clusters` with `eom`, `allow_single_cluster=False`, no epsilon, no
//! maximum size; `_do_labelling`). Same traversal orders and the same float64
//! sums, so the same tree gives the same labels.

/// One merge of the single-linkage tree (scipy's format): nodes `0..n` are the
/// points, node `n + i` is the cluster made by merge `i`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Merge {
    pub left: u32,
    pub right: u32,
    pub dist: f64,
    pub size: u32,
}

/// One row of the condensed tree: `child` (a point if `< n`, else a cluster)
/// leaves cluster `parent` at density `lambda` (1 / distance).
#[derive(Clone, Copy, Debug)]
pub(super) struct Row {
    pub parent: u32,
    pub child: u32,
    pub lambda: f64,
    pub size: u32,
}

/// `make_single_linkage`: `edges` (a, b, weight) must be sorted by weight.
pub(super) fn single_linkage(n: usize, edges: &[(u32, u32, f64)]) -> Vec<Merge> {
    // Union-find whose every union makes a new node, as scikit-learn's.
    let mut parent: Vec<u32> = (0..(2 * n).saturating_sub(1) as u32).collect();
    let mut size: Vec<u32> = vec![1; n];
    size.resize((2 * n).saturating_sub(1), 0);
    let find = |parent: &mut Vec<u32>, x: u32| -> u32 {
        let mut root = x;
        while parent[root as usize] != root {
            root = parent[root as usize];
        }
        let mut x = x;
        while parent[x as usize] != root {
            let next = parent[x as usize];
            parent[x as usize] = root;
            x = next;
        }
        root
    };
    let mut out = Vec::with_capacity(edges.len());
    for (i, &(a, b, w)) in edges.iter().enumerate() {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        let new = (n + i) as u32;
        let merged = size[ra as usize] + size[rb as usize];
        out.push(Merge {
            left: ra,
            right: rb,
            dist: w,
            size: merged,
        });
        parent[ra as usize] = new;
        parent[rb as usize] = new;
        size[new as usize] = merged;
    }
    out
}

/// Breadth-first order of the subtree under `root`, appended to `out`
/// (`bfs_from_hierarchy`).
fn bfs(hierarchy: &[Merge], n: usize, root: u32, out: &mut Vec<u32>) {
    let mut head = out.len();
    out.push(root);
    while head < out.len() {
        let node = out[head] as usize;
        head += 1;
        if node >= n {
            let m = &hierarchy[node - n];
            out.push(m.left);
            out.push(m.right);
        }
    }
}

/// `_condense_tree`: the clusters of at least `min_cluster_size` points and
/// the density at which every point falls out of them. Cluster ids start at
/// `n` (the root) and grow breadth-first, so a parent's rows come before its
/// children's.
pub(super) fn condense(hierarchy: &[Merge], n: usize, min_cluster_size: usize) -> Vec<Row> {
    let root = 2 * hierarchy.len();
    let mut node_list = Vec::with_capacity(root + 1);
    bfs(hierarchy, n, root as u32, &mut node_list);
    let mut relabel = vec![0u32; root + 1];
    relabel[root] = n as u32;
    let mut next_label = n as u32 + 1;
    let mut ignore = vec![false; root + 1];
    let mut result = Vec::with_capacity(n + 2 * n / min_cluster_size.max(1));
    let mut sub = Vec::new();
    let count = |node: u32| -> usize {
        if (node as usize) < n {
            1
        } else {
            hierarchy[node as usize - n].size as usize
        }
    };
    for &node in &node_list {
        let node = node as usize;
        if ignore[node] || node < n {
            continue;
        }
        let m = hierarchy[node - n];
        let lambda = if m.dist > 0.0 {
            1.0 / m.dist
        } else {
            f64::INFINITY
        };
        let (left_count, right_count) = (count(m.left), count(m.right));
        let parent = relabel[node];
        let mut fall_out = |child: u32, ignore: &mut Vec<bool>, result: &mut Vec<Row>| {
            sub.clear();
            bfs(hierarchy, n, child, &mut sub);
            for &s in &sub {
                if (s as usize) < n {
                    result.push(Row {
                        parent,
                        child: s,
                        lambda,
                        size: 1,
                    });
                }
                ignore[s as usize] = true;
            }
        };
        match (
            left_count >= min_cluster_size,
            right_count >= min_cluster_size,
        ) {
            (true, true) => {
                for (child, size) in [(m.left, left_count), (m.right, right_count)] {
                    relabel[child as usize] = next_label;
                    result.push(Row {
                        parent,
                        child: next_label,
                        lambda,
                        size: size as u32,
                    });
                    next_label += 1;
                }
            }
            (false, false) => {
                fall_out(m.left, &mut ignore, &mut result);
                fall_out(m.right, &mut ignore, &mut result);
            }
            (false, true) => {
                relabel[m.right as usize] = parent;
                fall_out(m.left, &mut ignore, &mut result);
            }
            (true, false) => {
                relabel[m.left as usize] = parent;
                fall_out(m.right, &mut ignore, &mut result);
            }
        }
    }
    result
}

/// `_compute_stability` then `_get_clusters` (excess of mass, the root never
/// selected) then `_do_labelling`: per point, the selected cluster it belongs
/// to (an id `>= n` of the condensed tree), or `None` for noise.
pub(super) fn select_and_label(rows: &[Row], n: usize) -> Vec<Option<u32>> {
    let mut labels = vec![None; n];
    if rows.is_empty() {
        return labels;
    }
    let root = n;
    let clusters = rows
        .iter()
        .map(|r| r.parent.max(r.child) as usize + 1)
        .max()
        .unwrap_or(root + 1)
        .max(root + 1)
        - root;

    // Stability: sum over rows of (lambda - birth(parent)) * size, in row order.
    let mut birth = vec![f64::NAN; clusters];
    birth[0] = 0.0;
    for r in rows {
        if r.child as usize >= n {
            birth[r.child as usize - root] = r.lambda;
        }
    }
    let mut stability = vec![0.0f64; clusters];
    for r in rows {
        let p = r.parent as usize - root;
        stability[p] += (r.lambda - birth[p]) * r.size as f64;
    }

    // Children clusters of each cluster, in row order.
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for r in rows {
        if r.size > 1 {
            children[r.parent as usize - root].push(r.child - root as u32);
        }
    }

    // Excess of mass, leaves first (children have larger ids than parents).
    let mut selected = vec![true; clusters];
    selected[0] = false;
    let mut stack = Vec::new();
    for c in (1..clusters).rev() {
        let subtree: f64 = children[c].iter().map(|&k| stability[k as usize]).sum();
        if subtree > stability[c] {
            selected[c] = false;
            stability[c] = subtree;
        } else {
            stack.extend_from_slice(&children[c]);
            while let Some(k) = stack.pop() {
                selected[k as usize] = false;
                stack.extend_from_slice(&children[k as usize]);
            }
        }
    }

    // Each cluster's label: itself if selected, else its parent's; the root
    // has none (noise). Rows list parents before children.
    let mut label_of: Vec<Option<u32>> = vec![None; clusters];
    for r in rows {
        let (p, child) = (r.parent as usize - root, r.child as usize);
        if child >= n {
            let k = child - root;
            label_of[k] = if selected[k] {
                Some(child as u32)
            } else {
                label_of[p]
            };
        } else {
            labels[child] = label_of[p];
        }
    }
    labels
}
