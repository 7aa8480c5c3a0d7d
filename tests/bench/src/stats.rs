//! Order statistics over samples (milliseconds or seconds, as the caller measures).

/// The nearest-rank percentile `p` (0..=100) of `v`; `None` when there are no samples.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

pub fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}

pub fn min_max(v: &[f64]) -> Option<(f64, f64)> {
    let min = v.iter().copied().reduce(f64::min)?;
    let max = v.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// A `min–max` table cell with `decimals` places: `-` when there are no samples.
pub fn range(v: &[f64], decimals: usize) -> String {
    min_max(v).map_or("-".into(), |(lo, hi)| {
        format!("{lo:.decimals$}–{hi:.decimals$}")
    })
}

/// A figure for a table cell: `-` when there is none.
pub fn cell(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(min_max(&[2.0, 5.0, 1.0]), Some((1.0, 5.0)));
        assert_eq!(range(&[2.0, 5.25, 1.0], 1), "1.0–5.2");
        assert_eq!(range(&[], 0), "-");
        assert_eq!(cell(None, 1), "-");
        assert_eq!(cell(Some(1.25), 1), "1.2");
    }
}
