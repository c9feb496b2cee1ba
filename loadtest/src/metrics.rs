//! Scraping the panel's `/metrics` (Prometheus text) to attribute lost events to a cause:
//! the panel counts what it drops, and the difference of two scrapes tells us why events
//! sent by the agents never reached a subscriber.

use std::collections::BTreeMap;

/// Every sample of a scrape, keyed by `name{labels}` as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `name{labels} value [timestamp]`; label values may contain spaces.
            let split_at = match line.rfind('}') {
                Some(i) => i + 1,
                None => line.find(' ').unwrap_or(line.len()),
            };
            let (series, rest) = line.split_at(split_at);
            let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) else {
                continue;
            };
            map.insert(series.trim().to_owned(), value);
        }
        Scrape(map)
    }

    /// The sum over series whose metric name satisfies `pred`.
    pub fn sum(&self, pred: impl Fn(&str) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| pred(series.split('{').next().unwrap_or(series)))
            .map(|(_, v)| *v)
            .sum()
    }

    /// The sum over series of metric `name` whose labels include `key="value"` (all series
    /// of `name` when `label` is `None`).
    pub fn get(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        let needle = label.map(|(k, v)| format!("{k}=\"{v}\""));
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, labels) = series.split_once('{').unwrap_or((series, ""));
                n == name && needle.as_deref().is_none_or(|x| labels.contains(x))
            })
            .map(|(_, v)| *v)
            .sum()
    }
}

const REJECTED: &str = "panel_agent_frames_rejected_total";

/// Agent frames the panel refused because of the per-agent rate limit.
pub fn agent_rate_limited(s: &Scrape) -> f64 {
    s.get(REJECTED, Some(("reason", "rate_limited")))
}

/// Agent frames the panel refused for any other reason (invalid, oversize, foreign server).
pub fn agent_rejected_other(s: &Scrape) -> f64 {
    s.get(REJECTED, None) - agent_rate_limited(s)
}

/// Event frames dropped because a subscriber's queue was full.
pub fn subscriber_drops(s: &Scrape) -> f64 {
    s.get("panel_events_dropped_total", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sums() {
        let text = "# HELP x y\n# TYPE panel_events_dropped_total counter\n\
            panel_events_dropped_total 7\n\
            panel_agent_frames_rejected_total{reason=\"invalid\"} 3\n\
            panel_agent_frames_rejected_total{reason=\"rate_limited\"} 5\n\
            panel_rate_limited_total{limiter=\"api\"} 9\n\
            panel_agents_online 10 1700000000\n\
            garbage line\n";
        let s = Scrape::parse(text);
        assert_eq!(s.0.len(), 5);
        assert_eq!(subscriber_drops(&s), 7.0);
        assert_eq!(agent_rate_limited(&s), 5.0);
        assert_eq!(agent_rejected_other(&s), 3.0);
        assert_eq!(s.sum(|n| n == "panel_agents_online"), 10.0);
    }
}
