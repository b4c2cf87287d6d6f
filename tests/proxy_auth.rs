//! Client authentication and TLS at the proxy: SCRAM-SHA-256 (default),
//! md5 and trust, with plaintext passwords and with SCRAM verifiers and md5
//! hashes taken from a real Postgres' pg_authid; wrong passwords and unknown
//! users get 28P01; TLS with a self-signed certificate (psql sslmode=require)
//! while plain connections keep working.

mod common;

use common::proxy::*;
use common::*;
use shardproxy::control::cluster::LocalCluster;

async fn login(p: &TestProxy, user: &str, password: &str) -> Result<i32, String> {
    match tokio_postgres::connect(&p.url_as(user, password), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            let who: String = client
                .query_one("SELECT current_user::text", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            // Backends always log in as the shard URL's user.
            assert_eq!(who, "postgres");
            let v: i32 = client
                .query_one("SELECT 41 + 1", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            Ok(v)
        }
        Err(e) => Err(format!(
            "{}|{}",
            code_of(&e),
            e.as_db_error().map(|d| d.message()).unwrap_or_default()
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_md5_and_trust() {
    within(60, auth_body()).await
}

async fn auth_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    // Stored credentials as Postgres makes them.
    let stored = |user: &'static str, method: &'static str| {
        let shard = &shard;
        async move {
            shard
                .batch_execute(&format!(
                    "SET password_encryption = '{method}'; CREATE ROLE {user} LOGIN PASSWORD 'pw-{user}'"
                ))
                .await
                .unwrap();
            let v: String = shard
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&user],
                )
                .await
                .unwrap()
                .get(0);
            v
        }
    };
    let scram_verifier = stored("scram_user", "scram-sha-256").await;
    let md5_hash = stored("md5_user", "md5").await;
    assert!(scram_verifier.starts_with("SCRAM-SHA-256$"));
    assert!(md5_hash.starts_with("md5"));
    let users = format!(
        "[[users]]\nname = \"scram_user\"\npassword = \"{scram_verifier}\"\n\
         [[users]]\nname = \"md5_user\"\npassword = \"{md5_hash}\"\n"
    );
    let shards = [("s0", c.url("postgres"))];

    // SCRAM-SHA-256, the default.
    let p = start_proxy_with(&shards, "", &users).await;
    assert_eq!(login(&p, USER, PASSWORD).await, Ok(42));
    assert_eq!(login(&p, "scram_user", "pw-scram_user").await, Ok(42));
    for (user, pw) in [
        (USER, "wrong"),
        ("scram_user", "pw-md5_user"),
        ("nobody", "x"),
    ] {
        let e = login(&p, user, pw).await.unwrap_err();
        assert_eq!(
            e,
            format!("28P01|password authentication failed for user \"{user}\""),
            "{user}"
        );
    }
    // An md5 hash cannot answer SCRAM: refused with a reason.
    let e = login(&p, "md5_user", "pw-md5_user").await.unwrap_err();
    assert!(e.starts_with("28000|") && e.contains("md5"), "{e}");
    // The wire shows SASL with SCRAM-SHA-256 offered.
    let mut r = Raw::connect(p.addr).await;
    r.send(&startup_packet(196608, &[("user", USER)])).await;
    let (tag, body) = r.recv().await.unwrap();
    assert_eq!(tag, b'R');
    assert_eq!(&body[..4], &10i32.to_be_bytes());
    assert!(String::from_utf8_lossy(&body).contains("SCRAM-SHA-256"));
    // A garbled SASL exchange is a protocol violation, not a crash.
    r.send(&msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x05n,,xx")).await;
    let e = r.error_then_close().await.expect("an error");
    assert!(["08P01", "28P01"].contains(&e.0.as_str()), "{e:?}");

    // md5.
    let p = start_proxy_with(&shards, "proxy.auth = \"md5\"", &users).await;
    let mut r = Raw::connect(p.addr).await;
    r.send(&startup_packet(196608, &[("user", USER)])).await;
    let (tag, body) = r.recv().await.unwrap();
    assert_eq!(
        (tag, &body[..4]),
        (b'R', &5i32.to_be_bytes()[..]),
        "md5 requested"
    );
    assert_eq!(login(&p, USER, PASSWORD).await, Ok(42));
    assert_eq!(login(&p, "md5_user", "pw-md5_user").await, Ok(42));
    // A SCRAM verifier cannot answer md5; like Postgres, SCRAM is used.
    assert_eq!(login(&p, "scram_user", "pw-scram_user").await, Ok(42));
    for (user, pw) in [
        (USER, "wrong"),
        ("md5_user", "pw-scram_user"),
        ("nobody", "x"),
    ] {
        let e = login(&p, user, pw).await.unwrap_err();
        assert!(
            e.starts_with("28P01|password authentication failed"),
            "{user}: {e}"
        );
    }

    // trust: known users in without a password check; unknown users still out.
    let p = start_proxy_with(&shards, "proxy.auth = \"trust\"", &users).await;
    assert_eq!(login(&p, USER, "anything").await, Ok(42));
    assert_eq!(login(&p, "md5_user", "").await, Ok(42));
    let e = login(&p, "nobody", "x").await.unwrap_err();
    assert!(e.starts_with("28P01|"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    within(60, tls_body()).await
}

async fn tls_body() {
    let c = temp_cluster();
    let dir = tempfile::tempdir().unwrap();
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        &format!(
            "proxy.tls_cert = \"{}\"\nproxy.tls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    )
    .await;
    let psql = |sslmode: &'static str, port: u16| async move {
        let conninfo =
            format!("sslmode={sslmode} host=127.0.0.1 port={port} user={USER} dbname=postgres");
        let out = tokio::process::Command::new(LocalCluster::bin_dir().unwrap().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-d",
                &conninfo,
                "-c",
                "\\conninfo",
                "-c",
                "SELECT 40 + 2",
            ])
            .env("PGPASSWORD", PASSWORD)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = psql("require", p.port()).await;
    assert!(ok, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1."), "{out}");
    assert!(out.lines().any(|l| l == "42"), "{out}");
    // Plain connections still work on the same port.
    let (ok, out, err) = psql("disable", p.port()).await;
    assert!(ok, "{err}");
    assert!(!out.contains("SSL connection"), "{out}");
    assert!(out.lines().any(|l| l == "42"), "{out}");
    let client = connect(&p.url()).await;
    let v: i32 = client.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    // The raw handshake: 'S', then TLS.
    let mut r = Raw::connect(p.addr).await;
    let mut ssl = 8i32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&80877103u32.to_be_bytes());
    r.send(&ssl).await;
    assert_eq!(r.recv_byte().await, b'S');
    // A proxy without TLS says 'N', and sslmode=require gives up.
    let plain = start_proxy(&[("s0", c.url("postgres"))], "").await;
    let (ok, _, err) = psql("require", plain.port()).await;
    assert!(!ok);
    assert!(err.contains("does not support SSL"), "{err}");
}
