//! Publishes N events to a topic, waiting for credit whenever the broker has no room.
//!
//! ```sh
//! flowgate broker --listen 127.0.0.1:7070 &
//! cargo run -p flowgate-client --example produce -- 127.0.0.1:7070 orders 10000
//! ```

use flowgate_client::{Producer, ProducerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7070".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let count: u64 = args.next().map_or(Ok(1000), |n| n.parse())?;

    let mut producer = Producer::connect(ProducerConfig::new(addr, topic)).await?;
    for i in 0..count {
        // Returns once the event is covered by credit; waits while the topic is full.
        producer
            .send_payload(format!("{{\"order\":{i}}}").into_bytes())
            .await?;
    }
    // Returns once the broker confirmed every event.
    let stats = producer.close().await?;
    println!(
        "sent {} events; waited {:?} for credit",
        stats.sent, stats.waited
    );
    Ok(())
}
