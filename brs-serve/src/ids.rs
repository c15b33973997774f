//! Identifiers clients hold: 128 random bits from the OS (unguessable, and not derivable from the
//! photo), prefixed by the UTC hour they were made. The hour is where every object of a job or a
//! result lives in the store (`results/<hour>/...`), so expiry and the size cap remove whole hours
//! without walking the store.

use std::fmt::Write;

/// An hour bucket, `YYYYMMDDHH` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Hour(u32);

impl Hour {
    pub(crate) fn now() -> Hour {
        Hour::of(time::OffsetDateTime::now_utc())
    }

    fn of(t: time::OffsetDateTime) -> Hour {
        // Years before 1 do not occur in clocks or in ids (`parse` refuses them).
        let year = u32::try_from(t.year()).unwrap_or(0).min(9999);
        Hour(
            year * 1_000_000
                + u32::from(u8::from(t.month())) * 10_000
                + u32::from(t.day()) * 100
                + u32::from(t.hour()),
        )
    }

    /// The hour `hours` before this one.
    pub(crate) fn minus(self, hours: u64) -> Hour {
        let t = self.start() - time::Duration::hours(hours.min(1 << 40) as i64);
        Hour::of(t)
    }

    /// When the hour begins. Every `Hour` is a real hour (`now`, `parse` and `minus` make no
    /// others), so the fallback never happens.
    fn start(self) -> time::OffsetDateTime {
        Hour::fields(self.0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    fn fields(v: u32) -> Option<time::OffsetDateTime> {
        let month = time::Month::try_from((v / 10_000 % 100) as u8).ok()?;
        let date =
            time::Date::from_calendar_date((v / 1_000_000) as i32, month, (v / 100 % 100) as u8)
                .ok()?;
        Some(date.with_hms((v % 100) as u8, 0, 0).ok()?.assume_utc())
    }

    /// Parses a bucket name; `None` for anything that is not a real hour of years 1..=9999.
    pub(crate) fn parse(s: &str) -> Option<Hour> {
        if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u32 = s.parse().ok()?;
        let t = Hour::fields(v)?;
        (t.year() >= 1).then_some(Hour(v))
    }

    /// Whole hours from `self` to `later`.
    pub(crate) fn hours_until(self, later: Hour) -> i64 {
        (later.start() - self.start()).whole_hours()
    }
}

impl std::fmt::Display for Hour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

/// Random hex digits in an id: 128 bits.
const RANDOM_HEX: usize = 32;

/// A new id: `<hour><32 hex digits>`.
pub(crate) fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; RANDOM_HEX / 2];
    getrandom::fill(&mut bytes)?;
    let mut id = Hour::now().to_string();
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
}

/// The hour of a well-formed id (`<hour><32 hex>`), `None` for anything else: nothing a client
/// sends reaches the store unless it passes this.
pub(crate) fn hour_of(id: &str) -> Option<Hour> {
    if id.len() != 10 + RANDOM_HEX
        || !id[10..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Hour::parse(&id[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_carry_their_hour() {
        let (a, b) = (new_id().expect("os rng"), new_id().expect("os rng"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 42);
        let h = hour_of(&a).expect("valid");
        assert!(h.hours_until(Hour::now()) <= 1);
        for bad in [
            "",
            "../etc/passwd",
            &a[..41],
            &format!("{a}0"),
            &a.to_uppercase(),
        ] {
            assert!(hour_of(bad).is_none(), "{bad}");
        }
        assert!(
            hour_of(&format!("2026139912{}", &a[10..])).is_none(),
            "month 13"
        );
    }

    #[test]
    fn hours_count_across_days_and_years() {
        let h = Hour::parse("2026010100").expect("valid");
        assert_eq!(h.minus(1).to_string(), "2025123123");
        assert_eq!(h.minus(1).hours_until(h), 1);
        assert_eq!(h.minus(24 * 365).hours_until(h), 24 * 365);
        assert!(Hour::parse("2026023012").is_none(), "February 30th");
        assert!(h.minus(5) < h);
    }
}
