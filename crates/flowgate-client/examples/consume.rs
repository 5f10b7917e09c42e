//! Consumes a topic and acknowledges each batch after "committing" it (here: printing a count).
//!
//! ```sh
//! cargo run -p flowgate-client --example consume -- 127.0.0.1:7070 orders db
//! ```

use flowgate_client::{Consumer, ConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7070".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "db".into());

    let mut consumer = Consumer::connect(ConsumerConfig::new(addr, topic, group)).await?;
    let mut total = 0;
    while let Some(batch) = consumer.recv().await? {
        total += batch.len();
        println!("received {} events ({total} in all)", batch.len());
        // Acknowledge only after the batch is safely committed downstream.
        consumer.ack(batch.iter().map(|d| d.tag));
    }
    Ok(())
}
