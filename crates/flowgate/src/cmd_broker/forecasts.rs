//! Each topic's forecast for `/stats` and metrics, from the stats loop's last two samples
//! (`--stats-every` apart): measured rates, never configured ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use flowgate_core::StageSplit;
use flowgate_observe::BrokerSnapshot;
use flowgate_observe::forecast::Forecast;

/// The last sample and the forecasts it gave, shared by the stats loop and `/stats`.
#[derive(Clone, Default)]
pub(super) struct Forecasts(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    last: Option<(Instant, BrokerSnapshot)>,
    by_topic: BTreeMap<String, Forecast>,
}

impl Forecasts {
    /// Takes the stats loop's newest sample: each topic seen in the one before gets a new
    /// forecast.
    pub(super) fn record(&self, now: &BrokerSnapshot) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let at = Instant::now();
        if let Some((then, prev)) = &state.last {
            let secs = at.duration_since(*then).as_secs_f64();
            let fresh: Vec<(String, Forecast)> = now
                .topics
                .iter()
                .filter_map(|t| {
                    let p = prev.topics.iter().find(|p| p.name == t.name)?;
                    let window = StageSplit::from(t.stage).since(&StageSplit::from(p.stage));
                    let (_, backpressured, _) = window.shares();
                    Some((t.name.clone(), Forecast::between(p, t, secs, backpressured)))
                })
                .collect();
            state.by_topic.extend(fresh);
        }
        state.last = Some((at, now.clone()));
    }

    /// Puts each topic's latest forecast into a `/stats` document.
    pub(super) fn fill(&self, snapshot: &mut BrokerSnapshot) {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for t in &mut snapshot.topics {
            t.forecast = state.by_topic.get(&t.name).cloned();
        }
    }
}
