//! Cron schedules: a standard five-field expression (or six, with seconds
//! first) in a time zone.
//!
//! Parsing and "when next" come from `croner`; time zones from `chrono-tz`
//! (IANA names such as `Europe/Paris`), so daylight-saving changes move
//! local-time schedules the way a person expects.

use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

/// Why a schedule is not one.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron expression `{expr}` has {fields} fields; write five (minute hour day month weekday) or six (seconds first)"
    )]
    Fields { expr: String, fields: usize },
    #[error("invalid cron expression `{expr}`: {source}")]
    Cron {
        expr: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error("unknown time zone `{0}`: use an IANA name like \"Europe/Paris\" or \"UTC\"")]
    TimeZone(String),
}

impl Schedule {
    /// Parses `expr` in time zone `tz` (an IANA name, or `UTC`).
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::Fields {
                expr: expr.into(),
                fields,
            });
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|source| ScheduleError::Cron {
                expr: expr.into(),
                source,
            })?;
        let tz = chrono_tz::Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.into()))?;
        Ok(Self { cron, tz })
    }

    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::{Schedule, ScheduleError};
    use chrono::{TimeZone, Utc};

    #[test]
    fn five_and_six_fields_and_zones() {
        let t = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 30).unwrap();
        let hourly = Schedule::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 28, 13, 0, 0).unwrap())
        );
        let secs = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            secs.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 40).unwrap())
        );
        // 09:00 in Paris is 08:00 UTC before the clocks change (29 March)
        // and 07:00 UTC after.
        let paris = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            paris.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap())
        );
        assert!(matches!(
            Schedule::parse("* * *", "UTC"),
            Err(ScheduleError::Fields { fields: 3, .. })
        ));
        assert!(matches!(
            Schedule::parse("61 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Schedule::parse("* * * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
