//! `Range` requests (RFC 9110 §14) and HTTP dates for the conditional fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a `Range` field asks of a representation of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable `Range`: send the whole thing (200). A malformed field, a unit other than
    /// `bytes`, or too many ranges are ignored this way, as RFC 9110 §14.2 allows.
    Full,
    /// These byte ranges, first and last byte inclusive, in the order asked (206).
    Ranges(Vec<(u64, u64)>),
    /// Well formed, but no range overlaps the representation (416).
    Unsatisfiable,
}

/// Parses a `Range` field value against a representation of `size` bytes, taking at most
/// `max_ranges` ranges.
///
/// ```
/// use twistor_http::static_files::{RangeRequest, parse_range};
/// assert_eq!(parse_range("bytes=0-9", 100, 8), RangeRequest::Ranges(vec![(0, 9)]));
/// assert_eq!(parse_range("bytes=-10", 100, 8), RangeRequest::Ranges(vec![(90, 99)]));
/// assert_eq!(parse_range("bytes=90-", 100, 8), RangeRequest::Ranges(vec![(90, 99)]));
/// assert_eq!(parse_range("bytes=100-", 100, 8), RangeRequest::Unsatisfiable);
/// assert_eq!(parse_range("lines=1-2", 100, 8), RangeRequest::Full);
/// ```
pub fn parse_range(value: &str, size: u64, max_ranges: usize) -> RangeRequest {
    let Some((unit, set)) = value.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    let mut ranges = Vec::new();
    let mut any = false;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue;
        }
        any = true;
        let Some((first, last)) = spec.split_once('-') else {
            return RangeRequest::Full;
        };
        let range = if first.is_empty() {
            // A suffix: the last `n` bytes.
            let Some(n) = digits(last) else {
                return RangeRequest::Full;
            };
            (n > 0 && size > 0).then(|| (size.saturating_sub(n), size - 1))
        } else {
            let Some(start) = digits(first) else {
                return RangeRequest::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match digits(last) {
                    Some(end) if end >= start => end,
                    _ => return RangeRequest::Full,
                }
            };
            (start < size).then(|| (start, end.min(size - 1)))
        };
        if let Some(range) = range {
            ranges.push(range);
            if ranges.len() > max_ranges {
                return RangeRequest::Full;
            }
        }
    }
    if !any {
        return RangeRequest::Full;
    }
    if ranges.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Ranges(ranges)
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an HTTP date in any of the three formats of RFC 9110 §5.6.7: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
/// asctime (`Sun Nov  6 08:49:37 1994`).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use twistor_http::static_files::parse_http_date;
/// let t = Some(UNIX_EPOCH + Duration::from_secs(784_111_777));
/// assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
/// assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
/// assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
/// assert_eq!(parse_http_date("yesterday"), None);
/// ```
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (day, month, year, clock) = match words[..] {
        // IMF-fixdate: day-name "," day month year time "GMT"
        [_, day, month, year, clock, "GMT"] => (day, month, year.parse().ok()?, clock),
        // RFC 850: day-name "," DD-Mon-YY time "GMT"
        [_, date, clock, "GMT"] => {
            let mut parts = date.split('-');
            let (day, month, yy) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy: u64 = yy.parse().ok()?;
            // RFC 9110: a two-digit year more than 50 years in the future is in the past
            // century; read 70–99 as 19xx, the rest as 20xx.
            (
                day,
                month,
                if yy >= 70 { 1900 + yy } else { 2000 + yy },
                clock,
            )
        }
        // asctime: day-name month day time year
        [_, month, day, clock, year] => (day, month, year.parse().ok()?, clock),
        _ => return None,
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = clock.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    if year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + m * 60 + s))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http_date;

    #[test]
    fn ranges() {
        let r = |v| parse_range(v, 1000, 4);
        assert_eq!(r("bytes=0-0"), RangeRequest::Ranges(vec![(0, 0)]));
        assert_eq!(r("bytes=0-5000"), RangeRequest::Ranges(vec![(0, 999)]));
        assert_eq!(
            r("bytes= 0-1 , 5-6,-2"),
            RangeRequest::Ranges(vec![(0, 1), (5, 6), (998, 999)])
        );
        assert_eq!(r("bytes=-5000"), RangeRequest::Ranges(vec![(0, 999)]));
        assert_eq!(r("bytes=1000-1001"), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=-0"), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=1000-, 2000-"), RangeRequest::Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=",
            "bytes=1",
            "0-5",
            "bytes=0-1,2-3,4-5,6-7,8-9",
        ] {
            assert_eq!(r(ignored), RangeRequest::Full, "{ignored}");
        }
        assert_eq!(parse_range("bytes=0-", 0, 4), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn dates_round_trip() {
        for secs in [0u64, 951_782_400, 1_709_251_199, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_http_date(&http_date(t)), Some(t));
        }
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date(""), None);
    }
}
