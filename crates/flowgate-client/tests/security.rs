//! Tokens and TLS against a real broker: a wrong token, a token outside its scope, no token,
//! and a plaintext client of a TLS broker are each refused with an error that names the
//! problem; the right token over TLS (with and without a client certificate) works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flowgate_broker::{BrokerConfig, TokenGrant, Tokens};
use flowgate_client::{ClientError, ClientTls, Consumer, ConsumerConfig, Producer, ProducerConfig};
use flowgate_proto::ErrorCode;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

mod common;

fn tokens() -> Tokens {
    let mut t = Tokens::default();
    let writer = TokenGrant::new("writer", "w-123", vec!["orders".into()], vec![]);
    t.add(writer.unwrap()).unwrap();
    let reader = TokenGrant::new("reader", "r-456", vec![], vec!["*".into()]);
    t.add(reader.unwrap()).unwrap();
    t
}

fn producer_config(addr: &str, topic: &str, token: Option<&str>) -> ProducerConfig {
    ProducerConfig {
        token: token.map(str::to_string),
        ..ProducerConfig::new(addr, topic)
    }
}

fn refusal(result: Result<impl std::fmt::Debug, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Refused { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_for_role_and_topic_and_refusals_say_why() {
    let b = common::broker_with(BrokerConfig {
        tokens: tokens(),
        ..BrokerConfig::default()
    })
    .await;
    let addr = b.local_addr().to_string();

    let (code, why) = refusal(Producer::connect(producer_config(&addr, "orders", None)).await);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(why.contains("requires a token"), "{why}");

    let wrong = Producer::connect(producer_config(&addr, "orders", Some("w-124"))).await;
    assert_eq!(
        refusal(wrong),
        (ErrorCode::Unauthorized, "unknown token".into())
    );

    let (_, why) =
        refusal(Producer::connect(producer_config(&addr, "payments", Some("w-123"))).await);
    assert!(
        why.contains("token 'writer' may not produce to topic 'payments'"),
        "{why}"
    );
    let consumer = ConsumerConfig {
        token: Some("w-123".into()),
        ..ConsumerConfig::new(&addr, "orders", "g")
    };
    let (_, why) = refusal(Consumer::connect(consumer).await);
    assert!(why.contains("may not consume from topic 'orders'"), "{why}");

    // The right tokens: one event through.
    let mut producer = Producer::connect(producer_config(&addr, "orders", Some("w-123")))
        .await
        .unwrap();
    producer.send_payload(b"paid".to_vec()).await.unwrap();
    producer.close().await.unwrap();
    let mut consumer = Consumer::connect(ConsumerConfig {
        token: Some("r-456".into()),
        ..ConsumerConfig::new(&addr, "orders", "g")
    })
    .await
    .unwrap();
    let batch = common::recv(&mut consumer, Duration::from_secs(5)).await;
    assert_eq!(batch[0].event.payload, b"paid");
    assert_eq!(b.stats().errors_sent.get("unauthorized"), Some(&4));
}

/// A CA, a broker certificate for 127.0.0.1 signed by it, and a client certificate; PEM
/// files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

fn pki(dir: &Path, prefix: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["client".into()]);
    Pki {
        ca: write(dir, &format!("{prefix}-ca.pem"), ca.pem()),
        server_cert: write(dir, &format!("{prefix}-server.pem"), server_cert),
        server_key: write(dir, &format!("{prefix}-server.key"), server_key),
        client_cert: write(dir, &format!("{prefix}-client.pem"), client_cert),
        client_key: write(dir, &format!("{prefix}-client.key"), client_key),
    }
}

fn tls_producer(addr: &str, tls: Option<ClientTls>) -> ProducerConfig {
    ProducerConfig {
        tls,
        ..ProducerConfig::new(addr, "t")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_broker_serves_tls_clients_and_refuses_the_rest_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let server =
        flowgate_proto::tls::server_config(&good.server_cert, &good.server_key, None).unwrap();
    let b = common::broker_with(BrokerConfig {
        tls: Some(server),
        ..BrokerConfig::default()
    })
    .await;
    let addr = b.local_addr().to_string();

    let (code, why) = refusal(Producer::connect(tls_producer(&addr, None)).await);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(why.contains("requires TLS"), "{why}");

    let untrusted = ClientTls::from_files(&other.ca, "127.0.0.1", None).unwrap();
    match Producer::connect(tls_producer(&addr, Some(untrusted))).await {
        Err(ClientError::Tls(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected a TLS refusal, got {other:?}"),
    }

    let trusted = ClientTls::from_files(&good.ca, "127.0.0.1", None).unwrap();
    let mut producer = Producer::connect(tls_producer(&addr, Some(trusted.clone())))
        .await
        .unwrap();
    producer.send_payload(b"secret".to_vec()).await.unwrap();
    producer.close().await.unwrap();
    let mut consumer = Consumer::connect(ConsumerConfig {
        tls: Some(trusted),
        ..ConsumerConfig::new(&addr, "t", "g")
    })
    .await
    .unwrap();
    let batch = common::recv(&mut consumer, Duration::from_secs(5)).await;
    assert_eq!(batch[0].event.payload, b"secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_requiring_client_certificates_admits_only_clients_that_have_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), "mtls");
    let server =
        flowgate_proto::tls::server_config(&p.server_cert, &p.server_key, Some(&p.ca)).unwrap();
    let b = common::broker_with(BrokerConfig {
        tls: Some(server),
        ..BrokerConfig::default()
    })
    .await;
    let addr = b.local_addr().to_string();

    let anonymous = ClientTls::from_files(&p.ca, "127.0.0.1", None).unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        Producer::connect(tls_producer(&addr, Some(anonymous))),
    )
    .await
    .expect("refused promptly");
    assert!(refused.is_err(), "no client certificate, no session");

    let identity = Some((p.client_cert.as_path(), p.client_key.as_path()));
    let with_cert = ClientTls::from_files(&p.ca, "127.0.0.1", identity).unwrap();
    let mut producer = Producer::connect(tls_producer(&addr, Some(with_cert)))
        .await
        .unwrap();
    producer.send_payload(b"x".to_vec()).await.unwrap();
    producer.close().await.unwrap();
}

#[test]
fn unreadable_or_empty_pem_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.pem", String::new());
    let e = ClientTls::from_files(&empty, "127.0.0.1", None).unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
    let missing = dir.path().join("missing.pem");
    let e = flowgate_proto::tls::server_config(&missing, &missing, None).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}
