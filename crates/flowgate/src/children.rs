//! Child processes the commands supervise (demo, bench): starting a server that announces its
//! address, and waiting for a child with a deadline.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Starts `cmd` (stdin piped so closing it can stop the child), reads its first stdout line,
/// `listening on ADDR`, and returns the child and the address. The rest of its stdout is
/// drained on a thread so it never blocks on a full pipe.
pub(crate) fn start_listening(cmd: &mut Command, name: &str) -> Result<(Child, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start the {name} process"))?;
    let mut reader = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let Some(addr) = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_string)
    else {
        let _ = child.kill();
        bail!("the {name} did not start (it said {:?})", line.trim());
    };
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok((child, addr))
}

/// Waits for `child` at most `limit`; kills it and fails past that.
pub(crate) fn wait_within(child: &mut Child, limit: Duration, name: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {name} did not finish within {limit:?}; it was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
