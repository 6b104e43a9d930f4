//! Completion indexes of Indexed Jobs: ordered intervals as `status.completedIndexes`
//! writes them (`"0-2,4,6,7"`), the index a pod carries, and which indexes still need
//! a pod.

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;

/// Annotation (and, since PodIndexLabel, label) with a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation counting the failed pods of an index (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Annotation counting the failures of an index that a pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// An inclusive run of indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub first: i32,
    pub last: i32,
}

/// Sorted, disjoint, non-adjacent intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderedIntervals(pub Vec<Interval>);

impl OrderedIntervals {
    /// Parses the `status.completedIndexes` format, dropping indexes at or above
    /// `completions` and skipping corrupt pieces (as the Job controller does).
    pub fn parse(s: &str, completions: i32) -> Self {
        let mut out: Vec<Interval> = Vec::new();
        if s.is_empty() {
            return Self(out);
        }
        for piece in s.split(',') {
            let mut limits = piece.split('-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else { continue };
            if first >= completions {
                break;
            }
            let last = match limits.next() {
                Some(l) => match l.parse::<i32>() {
                    Ok(l) => l.min(completions - 1),
                    Err(_) => continue,
                },
                None => first,
            };
            match out.last_mut() {
                Some(prev) if prev.last == first - 1 => prev.last = last,
                _ => out.push(Interval { first, last }),
            }
        }
        Self(out)
    }

    /// These intervals plus `new` (indexes in increasing order).
    pub fn with_ordered_indexes(&self, new: &[i32]) -> Self {
        let add = OrderedIntervals(new.iter().map(|&i| Interval { first: i, last: i }).collect());
        self.merge(&add)
    }

    /// The union of two interval lists.
    pub fn merge(&self, other: &OrderedIntervals) -> Self {
        let mut out: Vec<Interval> = Vec::new();
        let mut push = |iv: Interval| match out.last_mut() {
            Some(last) if iv.first <= last.last + 1 => last.last = last.last.max(iv.last),
            _ => out.push(iv),
        };
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i].first < b[j].first {
                push(a[i]);
                i += 1;
            } else {
                push(b[j]);
                j += 1;
            }
        }
        a[i..].iter().chain(&b[j..]).for_each(|iv| push(*iv));
        Self(out)
    }

    /// How many indexes the intervals hold.
    pub fn total(&self) -> i32 {
        self.0.iter().map(|iv| iv.last - iv.first + 1).sum()
    }

    pub fn has(&self, ix: i32) -> bool {
        let pos = self.0.partition_point(|iv| iv.last < ix);
        pos < self.0.len() && self.0[pos].first <= ix
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for OrderedIntervals {
    /// Two adjacent indexes print as `a,b`, longer runs as `a-b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, iv) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", iv.first)?;
            if iv.last > iv.first {
                let sep = if iv.last == iv.first + 1 { "," } else { "-" };
                write!(f, "{sep}{}", iv.last)?;
            }
        }
        Ok(())
    }
}

/// The completion index a pod carries in its annotation; `None` when absent, not a
/// number or negative.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    v.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// A pod's completion index when it is valid for a Job of `completions`.
pub fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

/// The indexes the given pods carry.
pub fn indexes_of<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> BTreeSet<i32> {
    pods.into_iter().filter_map(completion_index).collect()
}

/// The first `count` indexes below `completions` not taken by `non_pending`.
pub fn first_pending(non_pending: &OrderedIntervals, count: usize, completions: i32) -> Vec<i32> {
    let mut out = Vec::with_capacity(count);
    let mut candidate = 0;
    for iv in &non_pending.0 {
        while candidate < completions && out.len() < count && candidate < iv.first {
            out.push(candidate);
            candidate += 1;
        }
        candidate = candidate.max(iv.last + 1);
    }
    while candidate < completions && out.len() < count {
        out.push(candidate);
        candidate += 1;
    }
    out
}

/// A count annotation (index failure counts): 0 when absent, unparsable, negative or
/// larger than an int32.
pub fn count_annotation(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| (0..=i64::from(i32::MAX)).contains(v))
        .map(|v| v as i32)
        .unwrap_or(0)
}

/// The `generateName` of an indexed pod: `<job>-<index>-`, the job name cut so the
/// whole prefix stays within the 58 characters a generated name may take.
pub fn generate_name_with_index(job: &str, index: i32) -> String {
    const MAX_GENERATED_NAME_LENGTH: usize = 58;
    let suffix = format!("-{index}-");
    let mut prefix = format!("{job}{suffix}");
    if prefix.len() > MAX_GENERATED_NAME_LENGTH {
        let keep = MAX_GENERATED_NAME_LENGTH - suffix.len();
        let mut cut = keep.min(job.len());
        while !job.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix = format!("{}{suffix}", &job[..cut]);
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(v: &[(i32, i32)]) -> OrderedIntervals {
        OrderedIntervals(v.iter().map(|&(first, last)| Interval { first, last }).collect())
    }

    #[test]
    fn completed_indexes_print_as_the_job_controller_writes_them() {
        let cases: &[(&[(i32, i32)], &str)] = &[
            (&[], ""),
            (&[(0, 0)], "0"),
            (&[(0, 1)], "0,1"),
            (&[(0, 2), (4, 4)], "0-2,4"),
            (&[(1, 3), (5, 6), (9, 12)], "1-3,5,6,9-12"),
        ];
        for (v, want) in cases {
            assert_eq!(iv(v).to_string(), *want);
        }
    }

    type ParseCase<'a> = (&'a str, i32, &'a [(i32, i32)]);

    #[test]
    fn completed_indexes_parse_within_completions() {
        let cases: &[ParseCase] = &[
            ("", 5, &[]),
            ("0-2,4", 5, &[(0, 2), (4, 4)]),
            ("1,2,3", 5, &[(1, 3)]),
            ("0-9", 5, &[(0, 4)]),
            ("1,7", 5, &[(1, 1)]),
            ("x,2", 5, &[(2, 2)]),
            ("1-x,3", 5, &[(3, 3)]),
        ];
        for (s, completions, want) in cases {
            assert_eq!(OrderedIntervals::parse(s, *completions), iv(want), "{s}");
        }
    }

    #[test]
    fn merging_joins_adjacent_and_overlapping_intervals() {
        let a = iv(&[(0, 2), (7, 8)]);
        assert_eq!(a.with_ordered_indexes(&[3, 5, 9]), iv(&[(0, 3), (5, 5), (7, 9)]));
        assert_eq!(a.merge(&iv(&[(1, 8)])), iv(&[(0, 8)]));
        assert_eq!(a.total(), 5);
        assert!(a.has(0) && a.has(2) && a.has(8) && !a.has(3) && !a.has(9));
    }

    #[test]
    fn pending_indexes_skip_those_taken() {
        assert_eq!(first_pending(&iv(&[]), 3, 5), vec![0, 1, 2]);
        assert_eq!(first_pending(&iv(&[(0, 1), (3, 3)]), 5, 6), vec![2, 4, 5]);
        assert_eq!(first_pending(&iv(&[(0, 4)]), 2, 5), Vec::<i32>::new());
        assert_eq!(first_pending(&iv(&[(1, 1)]), 1, 5), vec![0]);
    }

    #[test]
    fn long_job_names_are_cut_for_indexed_pod_names() {
        assert_eq!(generate_name_with_index("pi", 3), "pi-3-");
        let long = "a".repeat(70);
        let g = generate_name_with_index(&long, 12);
        assert_eq!(g.len(), 58);
        assert!(g.ends_with("-12-"));
    }
}
