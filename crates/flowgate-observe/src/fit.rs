//! Reading a pace from samples: the least-squares slope of a counter over time.
//!
//! Credit arrives in chunks, so counters rise in steps; a fitted slope reads the pace through
//! the steps, where a difference of two points would read whichever step it landed on.

/// Least-squares slope of `points` (y per unit of x); `None` for fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The slope over the second half (by x) of `points`: the steady pace after start-up.
pub fn second_half_slope(points: &[(f64, f64)]) -> Option<f64> {
    let end = points.last()?.0;
    let start = points.first()?.0;
    let mid = start + (end - start) / 2.0;
    let half: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= mid).collect();
    slope(&half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_reads_the_pace_through_steps() {
        // 1,000/s delivered in steps of 500 every half second.
        let steps: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64 * 0.05, ((i / 10) * 500) as f64))
            .collect();
        let rate = slope(&steps).unwrap();
        assert!((rate - 1_000.0).abs() < 30.0, "{rate}");
    }

    #[test]
    fn slope_needs_two_distinct_points() {
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 9.0)]), None);
    }

    #[test]
    fn the_second_half_ignores_a_start_up_burst() {
        let mut pts = vec![(0.0, 0.0), (0.1, 5_000.0)];
        pts.extend((2..=100).map(|i| (i as f64 * 0.1, 5_000.0 + i as f64 * 100.0)));
        let rate = second_half_slope(&pts).unwrap();
        assert!((rate - 1_000.0).abs() < 1.0, "{rate}");
    }
}
