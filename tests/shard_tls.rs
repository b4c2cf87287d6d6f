//! TLS between the proxy and its shards: every `sslmode` against a server
//! with `ssl = on` and a CA this test makes (and against one without TLS),
//! client certificates, cancel requests over TLS, and the control path's
//! connections. One TLS cluster and one plain cluster for the whole file.

mod common;

use common::proxy::{code_of, start_proxy};
use common::{psql, temp_cluster, temp_cluster_with};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use shardproxy::control::cluster::ClusterOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Certificates for the test: a CA, a server certificate it signed for
/// `localhost` only, a client certificate for the role `certuser`, and an
/// unrelated CA.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_crt: PathBuf,
    server_key: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn make_pki() -> Pki {
    let dir = common::temp_dir();
    let d = dir.path();
    let ca = new_ca("shardproxy test CA");
    let other = new_ca("some other CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name.push(DnType::CommonName, "certuser");
    let client = cp.signed_by(&client_key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let pki = Pki {
        ca: write("ca.crt", ca.pem()),
        other_ca: write("other-ca.crt", other.pem()),
        server_crt: write("server.crt", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_crt: write("client.crt", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        _dir: dir,
    };
    // Postgres reads its key as the postgres user and refuses one others can read.
    for f in [&pki.server_crt, &pki.server_key, &pki.ca] {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(f)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok || !is_root(), "chown {}", f.display());
    }
    std::fs::set_permissions(&pki.server_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    pki
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// What a query through a proxy in front of `url` sees: Ok(the backend's
/// pg_stat_ssl.ssl) or Err(the error message).
async fn through_proxy(url: &str) -> Result<bool, String> {
    let p = start_proxy(&[("s0", url.to_string())], "").await;
    let c = common::connect(&p.url()).await;
    let r = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await;
    match r {
        Ok(row) => Ok(row.get(0)),
        Err(e) => Err(format!(
            "{} {}",
            code_of(&e),
            e.as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or(e.to_string())
        )),
    }
}

#[tokio::test]
async fn tls_to_shards() {
    let pki = make_pki();
    let opts = ClusterOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), path(&pki.server_crt)),
            ("ssl_key_file".into(), path(&pki.server_key)),
            ("ssl_ca_file".into(), path(&pki.ca)),
        ],
        hba: vec![
            "hostssl all certuser 127.0.0.1/32 cert".into(),
            "hostnossl all tlsonly 127.0.0.1/32 reject".into(),
        ],
        ..ClusterOptions::default()
    };
    let (tls, plain) = std::thread::scope(|s| {
        let t = s.spawn(|| temp_cluster_with(&opts));
        let p = s.spawn(temp_cluster);
        (t.join().unwrap(), p.join().unwrap())
    });
    psql(
        &tls.url("postgres"),
        "CREATE ROLE certuser LOGIN; CREATE ROLE tlsonly LOGIN; \
         GRANT pg_read_all_stats TO certuser, tlsonly",
    );
    let port = tls.port();
    let at =
        |host: &str, user: &str, q: &str| format!("postgres://{user}@{host}:{port}/postgres?{q}");
    let ca = path(&pki.ca);
    let other = path(&pki.other_ca);

    let plain_url = |q: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{q}",
            plain.port()
        )
    };
    let client_cert = format!(
        "sslcert={}&sslkey={}",
        path(&pki.client_crt),
        path(&pki.client_key)
    );
    // (URL, Ok(whether the backend uses TLS) or Err(words of the error)).
    let cases: Vec<(String, Result<bool, &str>)> = vec![
        // verify-full: the chain and the name; the certificate names localhost only.
        (
            at(
                "localhost",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Ok(true),
        ),
        (
            at(
                "127.0.0.1",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Err("certificate"),
        ),
        // verify-ca: the chain only, so the IP address is fine; a foreign CA is not.
        (
            at(
                "127.0.0.1",
                "postgres",
                &format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
            Ok(true),
        ),
        (
            at(
                "localhost",
                "postgres",
                &format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
            Err("certificate"),
        ),
        // require without a root certificate checks nothing (libpq's
        // meaning); with one it checks the chain, as libpq does.
        (at("127.0.0.1", "postgres", "sslmode=require"), Ok(true)),
        (
            at(
                "127.0.0.1",
                "postgres",
                &format!("sslmode=require&sslrootcert={other}"),
            ),
            Err("certificate"),
        ),
        // prefer (also the default): TLS when offered, plain when refused.
        (at("127.0.0.1", "postgres", ""), Ok(true)),
        (plain_url("sslmode=prefer"), Ok(false)),
        (plain_url("sslmode=require"), Err("does not support SSL")),
        // A role the server only lets in over TLS.
        (at("127.0.0.1", "tlsonly", "sslmode=prefer"), Ok(true)),
        (
            at("127.0.0.1", "tlsonly", "sslmode=disable"),
            Err("pg_hba.conf"),
        ),
        // Client certificates: `cert` authentication of certuser.
        (
            at(
                "localhost",
                "certuser",
                &format!("sslmode=verify-full&sslrootcert={ca}&{client_cert}"),
            ),
            Ok(true),
        ),
        (
            at(
                "localhost",
                "certuser",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Err("certificate"),
        ),
    ];
    for (url, want) in cases {
        let got = through_proxy(&url).await;
        match want {
            Ok(tls) => assert_eq!(got, Ok(tls), "{url}"),
            Err(words) => {
                let e = got.expect_err(&url);
                assert!(e.starts_with("08006") && e.contains(words), "{url}: {e}");
            }
        }
    }

    // A cancel goes over TLS too, and large messages cross it both ways.
    let p = start_proxy(
        &[(
            "s0",
            at(
                "localhost",
                "postgres",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
        )],
        "",
    )
    .await;
    let c = common::connect(&p.url()).await;
    let big = "x".repeat(4 << 20);
    let n: i32 = c
        .query_one("SELECT length($1::text)", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4 << 20);
    let rows = c
        .query(
            "SELECT g, repeat('y', 100) FROM generate_series(1, 50000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 50000);
    let token = c.cancel_token();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), sleeper)
        .await
        .expect("cancelled in time")
        .unwrap();
    assert_eq!(code_of(&r.unwrap_err()), "57014");

    // The control path connects the same way.
    let url = at(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let c = shardproxy::control::conn::connect(&url).await.unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let wrong = at(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let Err(e) = shardproxy::control::conn::connect(&wrong).await else {
        panic!("a wrong name is refused");
    };
    assert!(
        e.contains("certificate") || e.contains("error performing TLS handshake"),
        "{e}"
    );
    let c = shardproxy::control::conn::connect(&plain_url("sslmode=prefer"))
        .await
        .unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl);
    assert!(
        shardproxy::control::conn::connect(&plain_url("sslmode=require"))
            .await
            .is_err()
    );
}
