//! A consumer paced by its database: each batch is committed to SQLite, then acknowledged, and
//! the next batch's size (the demand sent to the broker) follows the commit latency. A slow
//! database asks for less, and the producers upstream wait; a fast one asks for more.
//!
//! ```sh
//! flowgate broker --listen 127.0.0.1:7070 &
//! cargo run -p flowgate-sink --example paced_consumer -- 127.0.0.1:7070 orders orders.db
//! ```

use std::time::Duration;

use flowgate_client::{Consumer, ConsumerConfig};
use flowgate_sink::{AnySink, DriverConfig, SinkDriver};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let broker = args.next().unwrap_or_else(|| "127.0.0.1:7070".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let db = args.next().unwrap_or_else(|| "orders.db".into());

    let consumer = Consumer::connect(ConsumerConfig::new(broker, topic, "db")).await?;
    let sink = AnySink::open(&format!("sqlite:{db}").parse()?).await?;
    let config = DriverConfig {
        commit_latency_target: Duration::from_millis(50),
        idle_exit: Some(Duration::from_secs(5)),
        ..DriverConfig::new()
    };
    let mut driver = SinkDriver::new(consumer, sink, config)?;
    driver.run().await?;

    let stats = driver.stats();
    println!(
        "committed {} events in {} commits; batch limit now {} (cut {} times), commit p99 {:.1} ms",
        stats.committed,
        stats.commits,
        stats.batch_limit,
        stats.batch_limit_cuts,
        stats.commit_latency_ms_p99
    );
    Ok(())
}
