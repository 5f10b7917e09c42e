//! Generated events: a payload of `--payload-size` bytes stamped with its number, sent at
//! most `--rate` a second, until `--count` or `--duration` or a stop.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use flowgate_core::TokenBucket;

use super::{ProduceArgs, Run};

/// Sends generated events until the count, the duration or a stop.
pub(super) async fn send_generated(run: &mut Run, args: &ProduceArgs) -> Result<()> {
    let payload_len = usize::try_from(args.payload_size.0).unwrap_or(usize::MAX);
    let burst = (args.rate.0 / 100).max(1);
    let mut bucket = TokenBucket::new(args.rate.0, burst, Duration::ZERO)?;
    let limit = args.count.unwrap_or(u64::MAX);
    let deadline = args.duration.map(|d| run.started + d.0);
    let mut sent = 0u64;
    while sent < limit && deadline.is_none_or(|d| Instant::now() < d) {
        let n = bucket.take_up_to(burst.min(limit - sent), run.started.elapsed());
        if n == 0 {
            let nap = bucket.time_until(1, run.started.elapsed());
            tokio::select! {
                biased;
                _ = run.shutdown.wait() => return Ok(()),
                () = tokio::time::sleep(nap) => {}
            }
            run.slept.fetch_add(
                u64::try_from(nap.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            continue;
        }
        for _ in 0..n {
            let mut payload = vec![b'x'; payload_len];
            // A little of the sequence in the payload, so rows are distinguishable.
            let stamp = sent.to_string();
            let k = stamp.len().min(payload.len());
            payload[..k].copy_from_slice(&stamp.as_bytes()[..k]);
            // The deadline also ends a wait for credit.
            let send = run.send(payload, None);
            let sent_one = match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), send).await {
                    Ok(sent_one) => sent_one,
                    Err(_) => return Ok(()),
                },
                None => send.await,
            };
            match sent_one {
                Some(result) => result?,
                None => return Ok(()),
            };
            sent += 1;
        }
        run.tick(sent);
    }
    Ok(())
}
