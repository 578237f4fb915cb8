//! `Date` and `Server` header helpers. The time is always the caller's: nothing here reads
//! the clock.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// The default `Server` field value: `twistor/<version>`.
pub const SERVER: &str = concat!("twistor/", env!("CARGO_PKG_VERSION"));

/// Formats a time as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Times before 1970 are formatted as the epoch.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(twistor_http::proto::http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
pub fn http_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_secs(secs)
}

/// Caches the `Date` field value for the current second, so a busy server formats it once
/// per second rather than once per response.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let mut dates = twistor_http::proto::DateCache::default();
/// let v = dates.header(UNIX_EPOCH + Duration::from_secs(784_111_777));
/// assert_eq!(v, "Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
#[derive(Debug, Clone, Default)]
pub struct DateCache {
    cached: Option<(u64, HeaderValue)>,
}

impl DateCache {
    /// The `Date` value for `now`.
    pub fn header(&mut self, now: SystemTime) -> HeaderValue {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match &self.cached {
            Some((s, v)) if *s == secs => v.clone(),
            _ => {
                let value = HeaderValue::from_str(&format_secs(secs))
                    .expect("an IMF-fixdate is a valid header value");
                self.cached = Some((secs, value.clone()));
                value
            }
        }
    }
}

fn format_secs(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian. The algorithm is
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn known_dates() {
        let at = |s| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_709_164_799), "Wed, 28 Feb 2024 23:59:59 GMT");
        assert_eq!(at(1_709_251_200), "Fri, 01 Mar 2024 00:00:00 GMT");
        assert_eq!(at(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
