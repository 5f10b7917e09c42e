//! Headless Chromium for tests that look at a page as a person would: the DOM after the
//! browser has parsed and laid it out, and a screenshot. Uses Debian's `chromium` package
//! (installed by scripts/test), with the flags that keep it off the network.

use std::path::Path;
use std::process::Command;

/// The flags every run uses: headless, no sandbox (tests run as root), and nothing that
/// would reach for the network at start-up.
const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
];

/// Runs Chromium with `args` and a fresh profile; returns its standard output, or panics with
/// its standard error.
fn run(args: &[String]) -> Vec<u8> {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("chromium")
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The DOM of `url` after Chromium loaded and rendered it.
pub fn dump_dom(url: &str) -> String {
    let out = run(&[
        "--virtual-time-budget=3000".into(),
        "--dump-dom".into(),
        url.into(),
    ]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Saves a PNG screenshot of `url` at `width` x `height` to `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    run(&[
        format!("--window-size={width},{height}"),
        format!("--screenshot={}", path.display()),
        url.into(),
    ]);
}
