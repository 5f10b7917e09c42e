//! Runs one mode's pipeline as a child process under a real memory limit, shows its samples
//! live, notices how it ended, and checks its figures against the database file.

use std::io::{BufRead, BufReader, IsTerminal};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Database;
use super::memlimit::{LimitWith, MemoryLimit};
use super::mode::Mode;
use super::pattern::Pattern;
use super::result::RunResult;
use super::sample::{Phase, Sample};
use flowgate_observe::units::human_bytes;

/// Everything a single-mode run needs, already validated.
#[derive(Debug, Clone)]
pub(crate) struct RunConfig {
    pub producer_rate: u64,
    pub consumer_rate: u64,
    pub duration: Duration,
    pub drain_timeout: Duration,
    pub queue_capacity: u64,
    pub queue_bytes: u64,
    pub payload_size: u64,
    pub memory_limit: u64,
    pub limit_with: LimitWith,
    pub pattern: Pattern,
    pub db: Database,
}

/// How long past its own deadline a pipeline may take before it is presumed hung and killed.
const HANG_GRACE: Duration = Duration::from_secs(30);

/// How much of the pipeline's stderr to keep for explaining how it ended.
const STDERR_TAIL_LINES: usize = 20;

/// Runs `mode` to its end and returns what was measured.
pub(crate) fn run_mode(config: &RunConfig, mode: Mode) -> Result<RunResult> {
    let limit = MemoryLimit::prepare(
        &format!("flowgate-demo-{}-{}", std::process::id(), mode.name()),
        config.memory_limit,
        config.limit_with,
    )?;
    let mut child = spawn_worker(config, mode, &limit)?;
    let spawned = Instant::now();
    let samples = read_samples(&mut child);
    let stderr_tail = keep_stderr_tail(&mut child);
    let mut view = LiveView::new(mode, config.duration);

    let hang_deadline = config.duration + config.drain_timeout + HANG_GRACE;
    let mut last: Option<(Sample, Instant)> = None;
    let mut peak_rss = 0u64;
    let mut history: Vec<Sample> = Vec::new();
    let (status, ended_at) = loop {
        match samples.recv_timeout(Duration::from_millis(50)) {
            Ok(sample) => {
                peak_rss = peak_rss.max(sample.peak_rss_bytes).max(sample.rss_bytes);
                view.update(&sample);
                history.push(sample.clone());
                last = Some((sample, Instant::now()));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child
            .try_wait()
            .context("cannot wait for the pipeline process")?
        {
            let ended_at = Instant::now();
            // Collect whatever the process wrote before it ended.
            while let Ok(sample) = samples.recv_timeout(Duration::from_millis(200)) {
                peak_rss = peak_rss.max(sample.peak_rss_bytes).max(sample.rss_bytes);
                history.push(sample.clone());
                last = Some((sample, ended_at));
            }
            break (status, ended_at);
        }
        if spawned.elapsed() > hang_deadline {
            let _ = child.kill();
            let _ = child.wait();
            view.finish();
            bail!("the {mode} pipeline did not finish within {hang_deadline:?}; it was killed");
        }
    };
    view.finish();

    let Some((last, last_seen)) = last else {
        let tail = stderr_tail.lock().map(|t| t.join("\n")).unwrap_or_default();
        bail!("the {mode} pipeline ended ({status}) before reporting anything:\n{tail}");
    };
    let clean = status.success() && last.phase == Phase::Done;
    let crash_reason = (!clean).then(|| explain_end(status, &limit, &stderr_tail));
    let committed = config.db.count(&mode.table())?;
    let elapsed_at_end = last.t + ended_at.saturating_duration_since(last_seen).as_secs_f64();
    Ok(RunResult::from_run(
        mode,
        config,
        &last,
        history,
        committed,
        peak_rss,
        crash_reason.map(|r| (r, elapsed_at_end)),
        limit.mechanism.describe(),
    ))
}

fn spawn_worker(config: &RunConfig, mode: Mode, limit: &MemoryLimit) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the flowgate executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-worker")
        .args(["--mode", mode.name()])
        .args(["--producer-rate", &config.producer_rate.to_string()])
        .args(["--consumer-rate", &config.consumer_rate.to_string()])
        .args(["--duration-ms", &config.duration.as_millis().to_string()])
        .args(["--drain-ms", &config.drain_timeout.as_millis().to_string()])
        .args(["--queue-capacity", &config.queue_capacity.to_string()])
        .args(["--queue-bytes", &config.queue_bytes.to_string()])
        .args(["--payload-size", &config.payload_size.to_string()])
        .args(["--memory-limit", &limit.bytes.to_string()])
        .args(["--pattern", config.pattern.name()])
        .arg("--db")
        .arg(config.db.arg())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match limit.mechanism.cgroup_dir() {
        Some(dir) => {
            cmd.arg("--cgroup").arg(dir);
        }
        // Under RLIMIT_DATA every malloc arena's reservation counts; two arenas keep the
        // limit about the heap rather than about how many threads touched malloc.
        None => {
            cmd.env("MALLOC_ARENA_MAX", "2");
        }
    }
    cmd.spawn().context("cannot start the pipeline process")
}

fn read_samples(child: &mut Child) -> mpsc::Receiver<Sample> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // A torn last line from a killed process is expected; skip what does not parse.
                if let Ok(sample) = serde_json::from_str::<Sample>(&line)
                    && tx.send(sample).is_err()
                {
                    return;
                }
            }
        });
    }
    rx
}

fn keep_stderr_tail(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let tail = Arc::new(Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = Arc::clone(&tail);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL_LINES {
                        t.remove(0);
                    }
                    t.push(line);
                }
            }
        });
    }
    tail
}

/// Says how a pipeline that did not finish cleanly ended, from what the kernel and the
/// process itself reported.
fn explain_end(
    status: ExitStatus,
    limit: &MemoryLimit,
    stderr: &Arc<Mutex<Vec<String>>>,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    // Give the stderr reader a moment to collect the process's last words.
    thread::sleep(Duration::from_millis(100));
    let tail = stderr.lock().map(|t| t.clone()).unwrap_or_default();
    let limit_text = human_bytes(limit.bytes);
    if limit.oom_kills() > 0 {
        return format!("killed by the kernel OOM killer at the {limit_text} memory limit");
    }
    if let Some(line) = tail
        .iter()
        .rev()
        .find(|l| l.contains("memory allocation of"))
    {
        return format!("out of memory at the {limit_text} limit: {}", line.trim());
    }
    let last_words = tail
        .last()
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    match status.signal() {
        Some(9) => format!("killed by SIGKILL (memory limit {limit_text}){last_words}"),
        Some(6) => format!("aborted (SIGABRT){last_words}"),
        Some(sig) => format!("killed by signal {sig}{last_words}"),
        None => format!("exited with {status}{last_words}"),
    }
}

/// The live line: a progress bar on a terminal, a plain line per second otherwise.
struct LiveView {
    mode: Mode,
    bar: ProgressBar,
    window: Vec<Sample>,
    last_plain: Option<Instant>,
}

impl LiveView {
    fn new(mode: Mode, duration: Duration) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(4)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(duration.as_millis() as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>13} [{bar:20}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(mode.name());
        LiveView {
            mode,
            bar,
            window: Vec::new(),
            last_plain: None,
        }
    }

    fn update(&mut self, sample: &Sample) {
        self.window.push(sample.clone());
        // Rates over the last second of samples.
        while self.window.len() > 2 && sample.t - self.window[0].t > 1.0 {
            self.window.remove(0);
        }
        let first = &self.window[0];
        let span = (sample.t - first.t).max(1e-3);
        let produced_rate = (sample.produced - first.produced) as f64 / span;
        let committed_rate = (sample.committed - first.committed) as f64 / span;
        let line = format!(
            "{:>5.1}s  produced {:>6.0}/s  committed {:>6.0}/s  queue {:>7} ev {:>10}  rss {:>10}  producer waiting {:>3.0}%{}",
            sample.t,
            produced_rate,
            committed_rate,
            sample.queued,
            human_bytes(sample.queued_bytes),
            human_bytes(sample.rss_bytes),
            sample.producer_wait_ratio() * 100.0,
            if sample.phase == Phase::Draining {
                "  (draining)"
            } else {
                ""
            },
        );
        if self.bar.is_hidden() {
            let due = self
                .last_plain
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if due {
                eprintln!("{:>13} {line}", self.mode.name());
                self.last_plain = Some(Instant::now());
            }
        } else {
            self.bar.set_position((sample.t * 1000.0) as u64);
            self.bar.set_message(line);
        }
    }

    fn finish(&self) {
        self.bar.abandon();
    }
}
