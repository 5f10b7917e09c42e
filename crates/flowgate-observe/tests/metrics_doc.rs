//! docs/metrics.md and the code's table of metrics are one source: every metric the table
//! exports is documented with the same kind, labels and meaning, and the page lists nothing
//! the table does not export.

use flowgate_observe::table::{Row, rows};

/// A documented metric: (name, kind, labels, meaning without markdown backticks).
type Documented = (String, String, Vec<String>, String);

fn documented() -> Vec<Documented> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let page = std::fs::read_to_string(path).unwrap();
    page.lines()
        .filter(|l| l.starts_with("| `flowgate_"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(
                cells.len(),
                4,
                "a row of metric | kind | labels | meaning: {l}"
            );
            let labels = cells[2]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty())
                .collect();
            (
                cells[0].trim_matches('`').to_string(),
                cells[1].to_string(),
                labels,
                cells[3].replace('`', ""),
            )
        })
        .collect()
}

fn as_documented(r: &Row) -> Documented {
    (
        r.name.to_string(),
        r.kind.name().to_string(),
        r.labels.iter().map(|l| l.to_string()).collect(),
        r.help.to_string(),
    )
}

#[test]
fn every_exported_metric_is_documented_as_the_table_says() {
    let docs = documented();
    for row in rows() {
        let want = as_documented(&row);
        let found = docs.iter().find(|d| d.0 == want.0);
        assert_eq!(
            found,
            Some(&want),
            "docs/metrics.md disagrees about {}",
            row.name
        );
    }
}

#[test]
fn the_page_documents_nothing_the_table_does_not_export() {
    let table: Vec<&str> = rows().iter().map(|r| r.name).collect();
    for (name, ..) in documented() {
        assert!(
            table.contains(&name.as_str()),
            "docs/metrics.md lists {name}, which no code exports"
        );
    }
}
