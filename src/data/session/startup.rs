//! The connection handshake: SSL/GSS negotiation, cancel requests, the
//! startup packet, authentication, then ParameterStatus, BackendKeyData and
//! the first ReadyForQuery.

use super::client_stream::ClientStream;
use crate::data::auth::{md5_check, random_salt4, AuthError, Credential, ScramServer};
use crate::data::codec::error::sqlstate;
use crate::data::codec::startup::{read_startup, StartupPacket};
use crate::data::codec::{messages, FrameReader, SqlError};
use crate::data::planner::standard_strings;
use crate::runtime::state::UserAuth;
use crate::runtime::{ClientInfo, Proxy, Runtime};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Name of the admin console's database.
pub const ADMIN_DATABASE: &str = "shardproxy";

/// A client that finished the handshake.
pub struct Handshake {
    pub stream: ClientStream,
    pub user: String,
    pub database: String,
    /// Startup parameters other than user/database/options/`_pq_.*`.
    pub params: Vec<(String, String)>,
    pub admin: bool,
}

/// How the opening of a connection ended.
pub enum Opening {
    Client(Handshake),
    /// A CancelRequest was served; the connection is done.
    Cancelled,
}

/// A handshake failure: the error to send (if the socket is still usable).
pub struct Refused {
    pub stream: Option<ClientStream>,
    pub error: SqlError,
}

impl Refused {
    fn on(stream: ClientStream, error: SqlError) -> Refused {
        Refused {
            stream: Some(stream),
            error,
        }
    }
}

/// Runs the handshake on a freshly accepted socket.
pub async fn handshake(
    socket: TcpStream,
    proxy: &Proxy,
    rt: &Runtime,
    info: &ClientInfo,
) -> Result<Opening, Refused> {
    let mut stream = ClientStream::Plain(socket);
    let mut negotiations = 0;
    let packet = loop {
        let packet = match read_startup(&mut stream).await {
            Ok(p) => p,
            Err(error) => return Err(Refused::on(stream, error)),
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if negotiations < 2 => {
                negotiations += 1;
                let tls = matches!(packet, StartupPacket::SslRequest)
                    .then_some(rt.tls.as_ref())
                    .flatten();
                match (tls, stream) {
                    (Some(acceptor), ClientStream::Plain(mut tcp)) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return Err(Refused {
                                stream: None,
                                error: SqlError::protocol("client went away"),
                            });
                        }
                        match acceptor.accept(tcp).await {
                            Ok(t) => stream = ClientStream::Tls(Box::new(t)),
                            Err(e) => {
                                return Err(Refused {
                                    stream: None,
                                    error: SqlError::protocol(format!("TLS handshake failed: {e}")),
                                })
                            }
                        }
                    }
                    (_, mut s) => {
                        if s.write_all(b"N").await.is_err() {
                            return Err(Refused {
                                stream: None,
                                error: SqlError::protocol("client went away"),
                            });
                        }
                        stream = s;
                    }
                }
            }
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                return Err(Refused::on(
                    stream,
                    SqlError::protocol("too many SSL/GSS negotiation requests"),
                ))
            }
            StartupPacket::Cancel { pid, secret } => {
                proxy.clients.cancel(pid, secret).await;
                return Ok(Opening::Cancelled);
            }
            StartupPacket::Startup { .. } => break packet,
        }
    };
    let StartupPacket::Startup { minor, params, .. } = packet else {
        return Err(Refused::on(
            stream,
            SqlError::protocol("expected a startup packet"),
        ));
    };
    let user = StartupPacket::param(&params, "user")
        .unwrap_or_default()
        .to_string();
    let database = StartupPacket::param(&params, "database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    let mut out = BytesMut::new();
    let unsupported: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if minor > 0 || !unsupported.is_empty() {
        messages::negotiate_protocol_version(&mut out, 0, unsupported);
    }
    let admin = database == ADMIN_DATABASE;
    let who = if admin {
        if user != rt.admin.name {
            return Err(Refused::on(
                stream,
                SqlError::fatal(
                    sqlstate::INVALID_AUTHORIZATION,
                    format!("user \"{user}\" may not connect to the admin console"),
                )
                .with_hint("Connect as the [admin] user of the proxy's config."),
            ));
        }
        &rt.admin
    } else {
        match rt.users.get(&user) {
            Some(u) => u,
            None => {
                // Run the whole exchange against a verifier no password
                // matches, as Postgres does, so user names cannot be probed.
                let mock = crate::runtime::state::UserAuth::unknown(&user);
                let error =
                    match authenticate(&mut stream, &mut out, &mock, &rt.config.proxy.auth).await {
                        Err(e) => e,
                        Ok(()) => SqlError::fatal(
                            sqlstate::INVALID_PASSWORD,
                            format!("password authentication failed for user \"{user}\""),
                        ),
                    };
                return Err(Refused::on(stream, error));
            }
        }
    };
    if let Err(error) = authenticate(&mut stream, &mut out, who, &rt.config.proxy.auth).await {
        return Err(Refused::on(stream, error));
    }
    if let Ok(mut u) = info.user.lock() {
        u.clone_from(&user);
    }
    if let Ok(mut d) = info.database.lock() {
        d.clone_from(&database);
    }
    let client_params: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "user" | "database" | "options" | "replication")
                && !k.starts_with("_pq_.")
        })
        .collect();
    let off = client_params.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case(standard_strings::NAME) && !standard_strings::is_on(v)
    });
    if off {
        return Err(Refused::on(
            stream,
            SqlError::fatal(sqlstate::FEATURE_NOT_SUPPORTED, standard_strings::REFUSAL),
        ));
    }
    if let Some((_, app)) = client_params.iter().find(|(k, _)| k == "application_name") {
        if let Ok(mut a) = info.application_name.lock() {
            a.clone_from(app);
        }
    }
    messages::auth_ok(&mut out);
    for (k, v) in reported_params(proxy, rt, &client_params).await {
        messages::parameter_status(&mut out, &k, &v);
    }
    messages::backend_key_data(&mut out, info.pid, info.secret);
    messages::ready_for_query(&mut out, b'I');
    if stream.write_all(&out).await.is_err() {
        return Err(Refused {
            stream: None,
            error: SqlError::protocol("client went away"),
        });
    }
    Ok(Opening::Client(Handshake {
        stream,
        user,
        database,
        params: client_params,
        admin,
    }))
}

/// Runs the configured password exchange. `out` holds messages not yet sent.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
    who: &UserAuth,
    method: &str,
) -> Result<(), SqlError> {
    let failed = || {
        SqlError::fatal(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{}\"", who.name),
        )
    };
    let mut reader = FrameReader::new(10_000);
    let use_md5 = method == "md5" && !matches!(who.credential, Credential::Scram(_));
    if method == "trust" {
        return Ok(());
    }
    if use_md5 {
        let salt = random_salt4();
        messages::auth_md5(out, salt);
        let resp = exchange(stream, out, &mut reader).await?;
        let text =
            std::str::from_utf8(resp.strip_suffix(&[0]).unwrap_or(&resp)).map_err(|_| failed())?;
        return if md5_check(&who.credential, &who.name, salt, text) {
            Ok(())
        } else {
            Err(failed())
        };
    }
    let verifier = who.scram.clone().ok_or_else(|| {
        SqlError::fatal(
            sqlstate::INVALID_AUTHORIZATION,
            format!("user \"{}\" has an md5 password, which SCRAM-SHA-256 cannot use", who.name),
        )
        .with_hint("Store a plaintext or SCRAM-SHA-256 password for this user, or set proxy.auth = \"md5\".")
    })?;
    let mut scram = ScramServer::new(verifier);
    messages::auth_sasl(out);
    let first = exchange(stream, out, &mut reader).await?;
    // SASLInitialResponse: mechanism name, then an i32 length and the data.
    let mech_end = first
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| SqlError::protocol("malformed SASLInitialResponse"))?;
    if &first[..mech_end] != b"SCRAM-SHA-256" {
        return Err(SqlError::protocol(
            "client selected an invalid SASL authentication mechanism",
        ));
    }
    let data = first.get(mech_end + 5..).unwrap_or(&[]);
    let map = |e: AuthError| match e {
        AuthError::WrongPassword => failed(),
        AuthError::Protocol(m) => SqlError::protocol(m),
    };
    let server_first = scram.handle_client_first(data).map_err(map)?;
    messages::auth_sasl_continue(out, server_first);
    let final_msg = exchange(stream, out, &mut reader).await?;
    let server_final = scram.handle_client_final(&final_msg).map_err(map)?;
    messages::auth_sasl_final(out, server_final);
    Ok(())
}

/// Sends `out`, then reads the client's password-family message ('p') body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
    reader: &mut FrameReader,
) -> Result<Vec<u8>, SqlError> {
    stream
        .write_all(out)
        .await
        .map_err(|_| SqlError::protocol("client went away during authentication"))?;
    out.clear();
    let frame = reader
        .next(stream)
        .await
        .map_err(|e| SqlError::protocol(format!("invalid authentication message: {e}")))?
        .ok_or_else(|| SqlError::protocol("client closed the connection during authentication"))?;
    if frame.tag != b'p' {
        return Err(SqlError::protocol(format!(
            "expected password response, got message type {}",
            frame.tag as char
        )));
    }
    let body = frame.body(&reader.buf).to_vec();
    reader.skip(frame);
    Ok(body)
}

/// GUCs that Postgres reports with ParameterStatus.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// The ParameterStatus set for a new client: the first shard's values (fetched
/// once), overridden by what the client asked for in its startup packet.
async fn reported_params(
    proxy: &Proxy,
    rt: &Runtime,
    client: &[(String, String)],
) -> Vec<(String, String)> {
    let cached = proxy.server_params.lock().ok().and_then(|c| c.clone());
    let mut params = match cached {
        Some(p) => p,
        None => {
            let fetched = match rt.pools.first() {
                Some(pool) => match pool.checkout().await {
                    Ok(mut lease) => {
                        let p = lease.backend().server_params.clone();
                        lease.release();
                        Some(p)
                    }
                    Err(_) => None,
                },
                None => None,
            };
            match fetched {
                Some(p) => {
                    if let Ok(mut c) = proxy.server_params.lock() {
                        *c = Some(p.clone());
                    }
                    p
                }
                None => vec![
                    ("server_version".into(), "15.0".into()),
                    ("server_encoding".into(), "UTF8".into()),
                    ("client_encoding".into(), "UTF8".into()),
                    ("DateStyle".into(), "ISO, MDY".into()),
                    ("integer_datetimes".into(), "on".into()),
                    ("standard_conforming_strings".into(), "on".into()),
                    ("TimeZone".into(), "UTC".into()),
                ],
            }
        }
    };
    for (k, v) in client {
        if let Some(name) = REPORTED.iter().find(|r| r.eq_ignore_ascii_case(k)) {
            match params
                .iter_mut()
                .find(|(pk, _)| pk.eq_ignore_ascii_case(name))
            {
                Some(slot) => slot.1.clone_from(v),
                None => params.push((name.to_string(), v.clone())),
            }
        }
    }
    params
}
