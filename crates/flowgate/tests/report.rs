//! The demo's HTML report, opened in headless Chromium: every chart is there and drawn, the
//! crash is marked, and nothing is fetched from the network.

use std::process::Command;

use common::BIN;

#[test]
fn the_report_renders_every_chart_in_a_browser_with_the_crash_marked() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let out = Command::new(BIN)
        .args([
            "demo",
            "--producer-rate",
            "3000",
            "--consumer-rate",
            "100",
            "--duration",
            "3s",
        ])
        .args([
            "--payload-size",
            "8KiB",
            "--memory-limit",
            "24MiB",
            "--queue-capacity",
            "20",
        ])
        .arg("--db")
        .arg(dir.path().join("d.db"))
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing to fetch (the SVG namespace URI is a name, not a request).
    for fetch in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<script src",
        "<link ",
    ] {
        assert!(
            !html.contains(fetch),
            "the report fetches something: {fetch}"
        );
    }

    let url = format!("file://{}", report.display());
    let dom = flowgate_testkit::chromium::dump_dom(&url);
    let charts: Vec<&str> = dom.split("<figure class=\"chart\"").skip(1).collect();
    assert_eq!(charts.len(), 6, "six charts");
    for chart in &charts {
        let chart = &chart[..chart.find("</figure>").unwrap()];
        assert!(
            chart.contains("<svg") && chart.contains("<polyline"),
            "a drawn chart: {}",
            &chart[..200.min(chart.len())]
        );
    }
    assert!(
        dom.contains("naive crashed at"),
        "the crash is marked on the charts"
    );

    let shot = dir.path().join("report.png");
    flowgate_testkit::chromium::screenshot(&url, &shot, 1000, 2600);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "a screenshot with content ({} bytes)",
        png.len()
    );
}

mod common;

#[test]
fn the_broker_dashboard_renders_every_chart_in_a_browser() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let broker = common::BrokerProc::start(
        dir.path(),
        "--capacity 500 --stats-every 200ms --metrics-addr 127.0.0.1:0",
    );
    let consumer = common::spawn(&format!(
        "consume --broker {} --topic t --group g --sink null --max-rate 500 --idle-exit 2s",
        broker.addr
    ));
    let producer = common::spawn(&format!(
        "produce --broker {} --topic t --rate 2000 --duration 3s",
        broker.addr
    ));
    std::thread::sleep(Duration::from_secs(2));
    // Without its self-refresh, so the browser settles on one rendering.
    let url = format!("http://{}/?refresh=0", broker.metrics.as_deref().unwrap());
    let dom = flowgate_testkit::chromium::dump_dom(&url);
    let charts: Vec<&str> = dom.split("<figure class=\"chart\"").skip(1).collect();
    assert_eq!(charts.len(), 4, "four charts: {dom}");
    for chart in &charts {
        let chart = &chart[..chart.find("</figure>").unwrap()];
        assert!(
            chart.contains("<svg") && chart.contains("<polyline"),
            "a drawn chart"
        );
    }
    assert!(dom.contains("events accepted"), "live figures in the page");
    let groups = &dom[dom.find("<table id=\"groups\"").expect("a groups table")..];
    assert!(
        groups.contains("<td>t</td><td>g</td><td>blocking</td><td>1</td>"),
        "group g of t, blocking, one consumer: {groups}"
    );
    let topics = &dom[dom.find("<table id=\"topics\"").expect("a topics table")..];
    assert!(
        topics.contains("<td>block</td>") && topics.contains("/s out"),
        "the topic's policy and its forecast in words: {topics}"
    );
    let shot = dir.path().join("dashboard.png");
    flowgate_testkit::chromium::screenshot(&url, &shot, 1000, 1500);
    assert!(std::fs::read(&shot).unwrap().len() > 30_000);
    assert!(common::finish(producer, Duration::from_secs(60)).success());
    assert!(common::finish(consumer, Duration::from_secs(60)).success());
    broker.stop();
}
