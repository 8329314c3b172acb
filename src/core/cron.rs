//! A small five-field cron schedule (`minute hour day-of-month month day-of-week`, UTC),
//! as disruption budgets take it (Karpenter uses the standard cron syntax for
//! `budgets[].schedule`). Pure: times are seconds since the Unix epoch, passed in.
//!
//! Each field takes `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, and lists of
//! those separated by commas. Months and weekdays also take three-letter names
//! (`jan`, `mon`); weekday 7 is Sunday like 0. The macros `@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly` are accepted. When both
//! day-of-month and day-of-week are restricted, a day matching either matches (as cron).

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CronError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("unknown macro {0:?} (expected @yearly, @monthly, @weekly, @daily or @hourly)")]
    Macro(String),
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day-of-month and day-of-week both restricted: either may match.
    either_day: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl FieldSpec {
    fn err(&self, message: String) -> CronError {
        CronError::Field {
            field: self.name,
            message,
        }
    }

    fn value(&self, s: &str) -> Result<u32, CronError> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Month names start at 1, weekday names at 0.
            return Ok(i as u32 + self.min);
        }
        match s.parse::<u32>() {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(self.err(format!(
                "{s:?} is not a value from {} to {}",
                self.min, self.max
            ))),
        }
    }

    /// Parses one field into a bit set (bit `v` for value `v`); also says whether it was
    /// `*` (unrestricted).
    fn parse(&self, text: &str) -> Result<(u64, bool), CronError> {
        let mut bits = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => match s.parse::<u32>() {
                    Ok(n) if n > 0 => (r, n),
                    _ => return Err(self.err(format!("bad step {s:?} in {part:?}"))),
                },
                None => (part, 1),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                // `5/15` means from 5 to the end in steps of 15.
                (v, if step > 1 { self.max } else { v })
            };
            if lo > hi {
                return Err(self.err(format!("range {range:?} runs backwards")));
            }
            for v in (lo..=hi).step_by(step as usize) {
                bits |= 1 << v;
            }
        }
        Ok((bits, text == "*"))
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => return Err(CronError::Macro(m.to_string())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, d, mo, w] = fields[..] else {
            return Err(CronError::FieldCount(fields.len()));
        };
        let (minutes, _) = MINUTE.parse(mi)?;
        let (hours, _) = HOUR.parse(h)?;
        let (days, any_day) = DAY.parse(d)?;
        let (months, _) = MONTH.parse(mo)?;
        let (mut weekdays, any_weekday) = WEEKDAY.parse(w)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            either_day: !any_day && !any_weekday,
        })
    }

    fn day_matches(&self, c: &Civil) -> bool {
        let dom = self.days & (1 << c.day) != 0;
        let dow = self.weekdays & (1 << c.weekday) != 0;
        let day = if self.either_day {
            dom || dow
        } else {
            dom && dow
        };
        day && self.months & (1 << c.month) != 0
    }

    /// Does the schedule fire in the minute that starts at `minute_start` (epoch seconds,
    /// a multiple of 60)?
    pub fn fires_at(&self, minute_start: i64) -> bool {
        let c = Civil::of(minute_start);
        self.day_matches(&c)
            && self.hours & (1 << c.hour) != 0
            && self.minutes & (1 << c.minute) != 0
    }

    /// The latest firing at or before `t` and not before `earliest` (epoch seconds), if
    /// any. Skips whole days and hours that cannot match, so long windows stay cheap.
    pub fn last_fire(&self, t: i64, earliest: i64) -> Option<i64> {
        let mut m = t.div_euclid(60) * 60;
        while m >= earliest {
            let c = Civil::of(m);
            if !self.day_matches(&c) {
                // To the last minute of the previous day.
                m = m - i64::from(c.hour) * 3600 - i64::from(c.minute) * 60 - 60;
            } else if self.hours & (1 << c.hour) == 0 {
                m = m - i64::from(c.minute) * 60 - 60;
            } else if self.minutes & (1 << c.minute) == 0 {
                m -= 60;
            } else {
                return Some(m);
            }
        }
        None
    }

    /// Is a window of `duration_s` opened by this schedule open at `t`?
    pub fn active(&self, t: i64, duration_s: i64) -> bool {
        duration_s > 0 && self.last_fire(t, t - duration_s + 1).is_some()
    }
}

/// A UTC calendar minute.
struct Civil {
    month: u32,
    day: u32,
    /// 0 = Sunday.
    weekday: u32,
    hour: u32,
    minute: u32,
}

impl Civil {
    /// Howard Hinnant's `civil_from_days`.
    fn of(t: i64) -> Self {
        let days = t.div_euclid(86_400);
        let secs = t.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            hour: (secs / 3600) as u32,
            minute: ((secs % 3600) / 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-02T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_793_577_600;

    #[test]
    fn civil_dates_are_right() {
        let c = Civil::of(MONDAY + 13 * 3600 + 7 * 60);
        assert_eq!(
            (c.month, c.day, c.weekday, c.hour, c.minute),
            (11, 2, 1, 13, 7)
        );
        let leap = Civil::of(1_709_164_800); // 2024-02-29
        assert_eq!((leap.month, leap.day, leap.weekday), (2, 29, 4));
        let epoch = Civil::of(0);
        assert_eq!((epoch.month, epoch.day, epoch.weekday), (1, 1, 4));
    }

    #[test]
    fn fields_parse_and_match() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        assert!(s.fires_at(MONDAY + 9 * 3600 + 45 * 60));
        assert!(!s.fires_at(MONDAY + 9 * 3600 + 46 * 60));
        assert!(!s.fires_at(MONDAY + 18 * 3600));
        // Sunday 2026-11-01.
        assert!(!s.fires_at(MONDAY - 86_400 + 10 * 3600));
        let sunday = Schedule::parse("0 0 * * 7").unwrap();
        assert!(sunday.fires_at(MONDAY - 86_400));
        assert!(!sunday.fires_at(MONDAY));
        assert_eq!(
            Schedule::parse("@daily").unwrap(),
            Schedule::parse("0 0 * * *").unwrap()
        );
    }

    #[test]
    fn day_of_month_or_weekday_when_both_given() {
        // The 1st of the month or any Friday.
        let s = Schedule::parse("0 12 1 * fri").unwrap();
        assert!(s.fires_at(MONDAY - 86_400 + 12 * 3600)); // Sun 1 Nov
        assert!(s.fires_at(MONDAY + 4 * 86_400 + 12 * 3600)); // Fri 6 Nov
        assert!(!s.fires_at(MONDAY + 12 * 3600)); // Mon 2 Nov
    }

    #[test]
    fn bad_schedules_are_errors() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "@sometimes",
            "",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn windows_open_after_a_firing_for_the_duration() {
        let s = Schedule::parse("0 9 * * mon-fri").unwrap();
        let nine = MONDAY + 9 * 3600;
        assert!(!s.active(nine - 1, 8 * 3600));
        assert!(s.active(nine, 8 * 3600));
        assert!(s.active(nine + 8 * 3600 - 1, 8 * 3600));
        assert!(!s.active(nine + 8 * 3600, 8 * 3600));
        assert!(!s.active(nine, 0));
        // Saturday 09:30 is not in a window: Friday's closed at 17:00.
        assert!(!s.active(MONDAY + 5 * 86_400 + 9 * 3600 + 1800, 8 * 3600));
        // A long window is found across skipped days: Monday's firing lasts three days.
        assert!(s.active(nine + 3 * 86_400 - 60, 3 * 86_400));
        assert_eq!(s.last_fire(nine + 3600, nine - 86_400), Some(nine));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                (lo..=hi).prop_map(|v| v.to_string()),
                (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
                (1..=hi.max(1)).prop_map(|n| format!("*/{n}")),
                (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{a},{b}")),
            ]
        }

        fn schedule() -> impl Strategy<Value = String> {
            (
                field(0, 59),
                field(0, 23),
                field(1, 31),
                field(1, 12),
                field(0, 7),
            )
                .prop_map(|(mi, h, d, mo, w)| format!("{mi} {h} {d} {mo} {w}"))
        }

        proptest! {
            /// The skipping search finds exactly what a minute-by-minute scan finds.
            #[test]
            fn last_fire_agrees_with_a_minute_by_minute_scan(
                text in schedule(),
                t in 0i64..4_000_000_000,
                window_min in 1i64..3 * 1440,
            ) {
                let s = Schedule::parse(&text).unwrap();
                let earliest = t - window_min * 60;
                let mut scan = None;
                let mut m = t.div_euclid(60) * 60;
                while m >= earliest {
                    if s.fires_at(m) {
                        scan = Some(m);
                        break;
                    }
                    m -= 60;
                }
                prop_assert_eq!(s.last_fire(t, earliest), scan);
            }

            /// A longer window is open whenever a shorter one is.
            #[test]
            fn windows_grow_with_their_duration(
                text in schedule(),
                t in 0i64..4_000_000_000,
                d in 1i64..86_400,
                more in 0i64..86_400,
            ) {
                let s = Schedule::parse(&text).unwrap();
                prop_assert!(!s.active(t, d) || s.active(t, d + more));
            }

            /// Any text is parsed or refused, never a panic.
            #[test]
            fn any_text_parses_or_is_refused(text in "[0-9a-z*/,@ -]{0,24}") {
                let _ = Schedule::parse(&text);
            }
        }
    }
}
