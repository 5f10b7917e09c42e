//! `flowgate broker` with tokens from its config file and TLS from PEM files, and `flowgate
//! produce` / `consume` reaching it: the right token over TLS gets events into the database;
//! a wrong token, a token outside its topics, and a plaintext client are refused with a
//! message naming the problem, and exit with status 1.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

mod common;

use common::{BIN, BrokerProc, finish, row_count, spawn};

/// Writes ca.pem, broker.pem and broker.key for 127.0.0.1 into `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("broker.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("broker.key"), key.serialize_pem()).unwrap();
}

/// Runs `flowgate ARGS` with a deadline; returns its exit code and stderr.
fn run(args: &str, token: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args.split_whitespace())
        .env_remove("FLOWGATE_TOKEN");
    if let Some(t) = token {
        cmd.env("FLOWGATE_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_over_tls_with_tokens_delivers_and_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    std::fs::write(
        d.join("broker.toml"),
        "[[token]]\nname = \"app\"\nsecret = \"app-secret\"\nproduce = [\"orders\"]\n\n\
         [[token]]\nname = \"db\"\nconsume = [\"orders\"]\n\
         # printf %s db-secret | sha256sum\n\
         secret_sha256 = \"5fbf9bf10407864eb8562d42e245fd6435ebebff6cdea8cae46bec8da0b11e9a\"\n",
    )
    .unwrap();
    let broker = BrokerProc::start(
        d,
        &format!(
            "--config {} --tls-cert {} --tls-key {}",
            d.join("broker.toml").display(),
            d.join("broker.pem").display(),
            d.join("broker.key").display()
        ),
    );
    let tls = format!(
        "--broker {} --tls-ca {}",
        broker.addr,
        d.join("ca.pem").display()
    );
    let db = d.join("orders.db");

    let produce = |topic: &str| format!("produce {tls} --topic {topic} --rate 5000 --count 1000");
    let (code, err) = run(&produce("orders"), Some("wrong"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown token"), "{err}");
    let (code, err) = run(&produce("payments"), Some("app-secret"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("token 'app' may not produce to topic 'payments'"),
        "{err}"
    );
    let plain = format!("produce --broker {} --topic orders --count 10", broker.addr);
    let (code, err) = run(&plain, Some("app-secret"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("requires TLS"), "{err}");

    let (code, err) = run(&produce("orders"), Some("app-secret"));
    assert_eq!(code, Some(0), "{err}");
    let consumer = spawn(&format!(
        "consume {tls} --token db-secret --topic orders --group db --sink sqlite:{} --count 1000",
        db.display()
    ));
    assert!(finish(consumer, Duration::from_secs(30)).success());
    assert_eq!(row_count(&db), 1_000);
    let summary = broker.stop();
    assert_eq!(summary["errors_sent"]["unauthorized"], 3, "{summary}");
}
