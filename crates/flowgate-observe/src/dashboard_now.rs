//! The dashboard's tables of the broker's latest figures: per topic its policy, fill, drops and
//! forecast in words, and per consumer group its mode, consumers and lag.

use std::fmt::Write as _;

use crate::charts::escape_html as escape;
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
            escape(&t.policy_text()),
            thousands(t.held()),
            thousands(t.capacity_events),
            t.producers,
            t.consumers,
            t.drops_text().unwrap_or_else(|| "none".to_string()),
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
