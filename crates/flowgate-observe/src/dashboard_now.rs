//! The dashboard's tables of the broker's latest figures: per topic its policy, fill, drops and
//! forecast in words, and per consumer group its mode, consumers and lag.

use std::fmt::Write as _;

use crate::snapshot::BrokerSnapshot;
use crate::units::thousands;

/// The tables for the latest snapshot (its forecasts filled in, when the broker had two
/// samples), as HTML.
pub(crate) fn tables(snapshot: &BrokerSnapshot) -> String {
    let mut html = String::from(
        "<h2>Topics</h2>\n<table id=\"topics\"><tr><th>topic</th><th>policy</th>\
         <th>held / capacity</th><th>producers</th><th>consumers</th><th>dropped</th>\
         <th>forecast</th></tr>\n",
    );
    for t in &snapshot.topics {
        let forecast = t
            .forecast
            .as_ref()
            .map(|f| f.text(&format!("'{}'", t.name)).join("; "))
            .unwrap_or_else(|| "after the next sample".to_string());
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&t.name),
            policy(t),
            thousands(t.held()),
            thousands(t.capacity_events),
            t.producers,
            t.consumers,
            drops(t),
            escape(&forecast)
        );
    }
    html.push_str(
        "</table>\n<h2>Consumer groups</h2>\n<table id=\"groups\"><tr><th>topic</th>\
         <th>group</th><th>mode</th><th>consumers</th><th>lag</th><th>acked</th>\
         <th>skipped</th><th>expired</th></tr>\n",
    );
    for t in &snapshot.topics {
        for g in &t.groups {
            let mode = match g.max_lag {
                None => "blocking".to_string(),
                Some(n) => format!("best effort, max lag {}", thousands(n)),
            };
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{mode}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&t.name),
                escape(&g.name),
                g.consumers,
                thousands(g.lag()),
                thousands(g.acked),
                thousands(g.skipped),
                thousands(g.expired)
            );
        }
    }
    html.push_str("</table>\n");
    html
}

fn policy(t: &crate::TopicSnapshot) -> String {
    match t.max_age_ms {
        Some(ms) => format!("{}, max age {} ms", escape(&t.policy), thousands(ms)),
        None => escape(&t.policy),
    }
}

/// Every drop the topic counted, by kind; "none" when there were none.
fn drops(t: &crate::TopicSnapshot) -> String {
    let kinds = [
        ("newest", t.dropped_newest),
        ("oldest", t.dropped_oldest),
        ("rejected", t.rejected),
        ("conflated", t.conflated),
        ("expired", t.expired),
        ("skipped", t.skipped),
    ];
    let counted: Vec<String> = kinds
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{} {k}", thousands(*n)))
        .collect();
    if counted.is_empty() {
        "none".to_string()
    } else {
        counted.join(", ")
    }
}

/// Text safe inside HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
