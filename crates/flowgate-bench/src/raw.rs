//! `flowgate bench-raw` (internal): the reference for `flowgate bench` — the same events,
//! length-prefixed, written in 64 KiB batches over one TCP hop with plain blocking IO, and
//! counted on the other side. No broker, no credit, no acks: the ceiling for one hop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use flowgate_core::EventId;
use flowgate_proto::WireEvent;

/// Which side to run.
#[derive(Debug, Subcommand)]
pub(crate) enum RawSide {
    /// Accept one connection and count `count` events; print a JSON line with the rate.
    Recv(RecvArgs),
    /// Connect and send `count` events.
    Send(SendArgs),
}

/// Receiver flags.
#[derive(Debug, Args)]
pub(crate) struct RecvArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    #[arg(long)]
    count: u64,
    /// Where to write `{"events","seconds","rate"}`.
    #[arg(long)]
    json: std::path::PathBuf,
}

/// Sender flags.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[arg(long)]
    to: String,
    #[arg(long)]
    count: u64,
    #[arg(long, default_value_t = 100)]
    payload_size: usize,
}

/// `flowgate bench-raw`.
#[derive(Debug, Args)]
pub struct BenchRawArgs {
    #[command(subcommand)]
    side: RawSide,
}

/// Runs one side.
pub fn run(args: BenchRawArgs) -> Result<u8> {
    match args.side {
        RawSide::Recv(a) => recv(a),
        RawSide::Send(a) => send(a),
    }
}

fn recv(args: RecvArgs) -> Result<u8> {
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let (stream, _) = listener.accept()?;
    let mut input = BufReader::with_capacity(256 * 1024, stream);
    let mut seen = 0u64;
    let mut started = None;
    let mut len = [0u8; 4];
    while seen < args.count {
        input.read_exact(&mut len)?;
        started.get_or_insert_with(Instant::now);
        let n = u32::from_be_bytes(len) as usize;
        // Skip the event's bytes without copying them out of the buffer.
        let mut left = n;
        while left > 0 {
            let chunk = input.fill_buf()?.len().min(left);
            if chunk == 0 {
                bail!("sender closed after {seen} events");
            }
            input.consume(chunk);
            left -= chunk;
        }
        seen += 1;
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let rate = seen as f64 / secs.max(1e-9);
    std::fs::write(
        &args.json,
        format!(r#"{{"events":{seen},"seconds":{secs},"rate":{rate}}}"#),
    )?;
    Ok(0)
}

fn send(args: SendArgs) -> Result<u8> {
    let mut stream =
        TcpStream::connect(&args.to).with_context(|| format!("cannot connect to {}", args.to))?;
    stream.set_nodelay(true)?;
    let payload = bytes::Bytes::from(vec![b'x'; args.payload_size]);
    let mut buf = bytes::BytesMut::with_capacity(80 * 1024);
    for seq in 1..=args.count {
        let event = WireEvent {
            id: EventId::new(1, seq),
            created_us: seq,
            key: None,
            payload: payload.clone(),
        };
        buf.extend_from_slice(&(event.encoded_len() as u32).to_be_bytes());
        event.encode(&mut buf);
        if buf.len() >= 64 * 1024 {
            stream.write_all(&buf)?;
            buf.clear();
        }
    }
    stream.write_all(&buf)?;
    stream.flush()?;
    Ok(0)
}
