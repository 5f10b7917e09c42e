//! flowgate services run as child processes (the demo's distributed mode, the bench): start
//! one and learn the addresses it announces on its first lines, and wait for one with a
//! deadline.

use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `cmd` (stdin piped so closing it can stop the child), reads its first stdout line,
/// `listening on ADDR`, and returns the child and the address. The rest of its stdout is
/// drained on a thread so it never blocks on a full pipe.
pub fn start_listening(cmd: &mut Command, name: &str) -> io::Result<(Child, String)> {
    let (child, mut addrs) = start_announcing(cmd, name, &["listening on "])?;
    Ok((child, addrs.remove(0)))
}

/// Starts `cmd` as [`start_listening`] does and reads one stdout line per prefix, in order
/// (`listening on `, then e.g. `HTTP API on `), returning what follows each: the child is
/// serving on every address once this returns.
pub fn start_announcing(
    cmd: &mut Command,
    name: &str,
    prefixes: &[&str],
) -> io::Result<(Child, Vec<String>)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the {name} process: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(io::Error::other(format!(
            "the {name} process has no stdout"
        )));
    };
    let mut reader = BufReader::new(stdout);
    let mut addrs = Vec::new();
    for prefix in prefixes {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix(prefix).map(str::to_string) else {
            let _ = child.kill();
            return Err(io::Error::other(format!(
                "the {name} did not start (it said {:?})",
                line.trim()
            )));
        };
        addrs.push(addr);
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok((child, addrs))
}

/// Waits for `child` at most `limit`; kills it and fails past that.
pub fn wait_within(child: &mut Child, limit: Duration, name: &str) -> io::Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the {name} did not finish within {limit:?}; it was killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
