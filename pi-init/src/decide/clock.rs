//! The clock before the root runs: a Pi has no real-time clock, so until NTP answers its
//! system lives wherever the kernel started it (1970, or a saved guess), and TLS, certificates
//! and package signatures fail. The controller's answers carry the HTTP `Date` header; when
//! the clock is behind it by more than [`TOLERANCE`], pi-init sets it from that header.

use std::time::Duration;

/// How far behind the controller's clock may be before it is set: the header has one-second
/// resolution and the answer took some time to arrive.
pub const TOLERANCE: Duration = Duration::from_secs(2);

/// The time to set, if the clock (`now`, since the Unix epoch) is behind the controller's
/// `Date` (`server`, seconds since the epoch) by more than [`TOLERANCE`]. A clock ahead of
/// the controller is left alone: moving time backwards breaks more than it mends, and NTP is
/// the authority once the root runs. The header's second is taken at its middle.
pub fn correction(now: Duration, server: u64) -> Option<Duration> {
    let server = Duration::from_secs(server) + Duration::from_millis(500);
    (server > now + TOLERANCE).then_some(server)
}

/// An HTTP date in the form every current server sends (RFC 9110's IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), as seconds since the Unix epoch. Other forms: `None`.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let mut f = s.trim().split(' ');
    let (_weekday, day, month, year, time, zone) = (
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
        f.next()?,
    );
    if f.next().is_some() || zone != "GMT" || day.len() != 2 || year.len() != 4 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let (day, year): (u64, u64) = (day.parse().ok()?, year.parse().ok()?);
    let mut t = time
        .split(':')
        .map(|p| p.parse::<u64>().ok().filter(|_| p.len() == 2));
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    if t.next().is_some() || !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`, for years from 1970 on).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_as_servers_send_them() {
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Thu, 03 Dec 2026 09:33:23 GMT", Some(1_796_290_403)),
            ("Tue, 29 Feb 2028 23:59:59 GMT", Some(1_835_481_599)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", None),
            ("Sun Nov  6 08:49:37 1994", None),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 06 Foo 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 8:49:37 GMT", None),
            ("Sun, 32 Nov 1994 08:49:37 GMT", None),
            ("", None),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            assert_eq!(parse_http_date(text), *want, "test[{i}]: {text:?}");
        }
    }

    #[test]
    fn only_a_clock_behind_by_more_than_the_tolerance_is_set() {
        let server = 1_796_290_403;
        let at = |s: u64| Duration::from_secs(s);
        // A Pi that woke up in 1970, or in 2001 (QEMU's -rtc base=2001-01-01).
        assert_eq!(
            correction(at(5), server),
            Some(at(server) + Duration::from_millis(500))
        );
        assert!(correction(at(978_307_200), server).is_some());
        // Within the tolerance, or ahead: left alone.
        assert_eq!(correction(at(server - 1), server), None);
        assert_eq!(correction(at(server), server), None);
        assert_eq!(correction(at(server + 3600), server), None);
    }
}
