//! The PostgreSQL sink against a real, throw-away server: idempotent by event id, a bad JSON
//! payload refused alone while the rest of its batch commits, dead letters with reasons.

use flowgate_core::{Event, EventId};
use flowgate_sink::{AnySink, DeadLetter, SinkUrl};
use flowgate_testkit::PgServer;
use tokio_postgres::NoTls;

fn event(seq: u64, payload: &[u8]) -> Event {
    Event {
        id: EventId::new(u64::MAX - 1, seq),
        key: None,
        created_us: seq,
        payload: payload.to_vec(),
    }
}

async fn query_one(url: &str, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_insert_is_idempotent_and_bad_rows_are_isolated_and_dead_lettered() {
    let pg = PgServer::start(false);
    let url: SinkUrl = format!("{}?table=orders&payload=json", pg.url())
        .parse()
        .unwrap();
    let mut sink = AnySink::open(&url).await.unwrap();

    let good: Vec<Event> = (1..=500)
        .map(|i| event(i, format!(r#"{{"n":{i}}}"#).as_bytes()))
        .collect();
    assert_eq!(sink.write_batch(&good).await.unwrap().new_rows, 500);
    // A redelivery of half of them plus new ones: only the new ones are rows.
    let again: Vec<Event> = (251..=750)
        .map(|i| event(i, format!(r#"{{"n":{i}}}"#).as_bytes()))
        .collect();
    assert_eq!(sink.write_batch(&again).await.unwrap().new_rows, 250);

    let mixed = vec![
        event(751, b"[1]"),
        event(752, b"{oops"),
        event(753, b"2"),
        event(754, &[0xff, 0xfe]),
    ];
    let c = sink.write_batch(&mixed).await.unwrap();
    assert_eq!(c.new_rows, 2);
    assert_eq!(
        c.rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(c.rejected[0].1.contains("json"), "{:?}", c.rejected);

    sink.dead_letter(&[DeadLetter {
        event: &mixed[1],
        attempts: 3,
        reason: &c.rejected[0].1,
    }])
    .await
    .unwrap();
    assert_eq!(
        query_one(&pg.url(), "SELECT COUNT(*) FROM orders").await,
        752
    );
    assert_eq!(
        query_one(
            &pg.url(),
            "SELECT COUNT(DISTINCT (producer, seq)) FROM orders"
        )
        .await,
        752
    );
    assert_eq!(
        query_one(
            &pg.url(),
            "SELECT MAX(attempts)::bigint FROM orders_dead_letters"
        )
        .await,
        3
    );
    // Ids above i64::MAX round-trip bit for bit.
    assert_eq!(
        query_one(&pg.url(), "SELECT MIN(producer) FROM orders").await,
        -2
    );
}
