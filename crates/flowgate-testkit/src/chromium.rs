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

fn chromium(profile: &Path) -> Command {
    let mut c = Command::new("chromium");
    c.args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The DOM of `url` after Chromium loaded and rendered it.
pub fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = chromium(profile.path())
        .args(["--virtual-time-budget=3000", "--dump-dom", url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a PNG screenshot of `url` at `width` x `height` to `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = chromium(profile.path())
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
