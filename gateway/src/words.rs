//! Small words every user-facing message shares: counted nouns ("1 tool", "3 targets") and
//! durations as people write them ("250 ms", "1.5 s", "2 min"), so the CLI, the config
//! diagnostics and the upstream messages all say them the same way.

use std::time::Duration;

/// `1 tool`, `0 tools`, `3 tools`: a count with its noun (regular plurals only).
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `250 ms`, `1 s`, `1.5 s`, `30 s`, `2 min`: a duration as people write a setting or a
/// measurement (exact: a fraction of a second is kept).
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(60_000) && ms >= 120_000 {
        format!("{} min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// How long something has lasted, rounded down as people say it ("for 42 s", "after
/// 3 min"): milliseconds under a second, whole seconds under two minutes, whole minutes
/// beyond (milliseconds are noise above a second).
pub fn elapsed(d: Duration) -> String {
    let rounded = match d.as_secs() {
        0 => Duration::from_millis(d.subsec_millis().into()),
        s if s >= 120 => Duration::from_secs(s / 60 * 60),
        s => Duration::from_secs(s),
    };
    duration(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_plural_except_for_one() {
        assert_eq!(plural(0, "tool"), "0 tools");
        assert_eq!(plural(1, "tool"), "1 tool");
        assert_eq!(plural(5, "target"), "5 targets");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(1)), "1 s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration(Duration::from_secs(30)), "30 s");
        assert_eq!(duration(Duration::from_secs(90)), "90 s");
        assert_eq!(duration(Duration::from_secs(120)), "2 min");
    }

    #[test]
    fn elapsed_times_are_rounded_down_to_what_matters() {
        assert_eq!(elapsed(Duration::from_micros(9_400)), "9 ms");
        assert_eq!(elapsed(Duration::from_millis(1_500)), "1 s");
        assert_eq!(elapsed(Duration::from_millis(119_999)), "119 s");
        assert_eq!(elapsed(Duration::from_secs(150)), "2 min");
        assert_eq!(elapsed(Duration::from_secs(3_600)), "60 min");
    }
}
