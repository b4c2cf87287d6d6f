//! Builders for the backend messages the proxy sends itself (during startup,
//! for the admin console, and for synthesized replies). Encoded with pgwire's
//! message types; relayed traffic never passes through here.

use bytes::{BufMut, BytesMut};
use pgwire::messages::data::{DataRow, FieldDescription, RowDescription};
use pgwire::messages::response::{CommandComplete, ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey,
};
use pgwire::messages::Message;

/// Text type OID, used for every admin console column.
pub const TEXT_OID: u32 = 25;

fn put<M: Message>(buf: &mut BytesMut, m: M) {
    // Encoding into a growable BytesMut only fails for oversized messages,
    // which the proxy never builds.
    let _ = m.encode(buf);
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    let status = match status {
        b'T' => TransactionStatus::Transaction,
        b'E' => TransactionStatus::Error,
        _ => TransactionStatus::Idle,
    };
    put(buf, ReadyForQuery::new(status));
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, Authentication::Ok);
}

pub fn auth_cleartext(buf: &mut BytesMut) {
    put(buf, Authentication::CleartextPassword);
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(buf, Authentication::MD5Password(salt.to_vec()));
}

pub fn auth_sasl(buf: &mut BytesMut) {
    put(buf, Authentication::SASL(vec!["SCRAM-SHA-256".into()]));
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: Vec<u8>) {
    put(buf, Authentication::SASLContinue(data.into()));
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: Vec<u8>) {
    put(buf, Authentication::SASLFinal(data.into()));
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(buf, ParameterStatus::new(name.into(), value.into()));
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(buf, BackendKeyData::new(pid, SecretKey::I32(secret)));
}

pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: i32, unsupported: Vec<String>) {
    put(
        buf,
        NegotiateProtocolVersion::new(newest_minor, unsupported),
    );
}

pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(buf, CommandComplete::new(tag.into()));
}

/// A RowDescription of text columns.
pub fn row_description_text(buf: &mut BytesMut, names: &[&str]) {
    let fields = names
        .iter()
        .map(|n| FieldDescription::new(n.to_string(), 0, 0, TEXT_OID, -1, -1, 0))
        .collect();
    put(buf, RowDescription::new(fields));
}

/// A DataRow of text values (None is SQL NULL).
pub fn data_row_text<S: AsRef<str>>(buf: &mut BytesMut, values: &[Option<S>]) {
    let mut data = BytesMut::new();
    for v in values {
        match v {
            Some(s) => {
                let s = s.as_ref().as_bytes();
                data.put_i32(s.len() as i32);
                data.put_slice(s);
            }
            None => data.put_i32(-1),
        }
    }
    put(buf, DataRow::new(data, values.len() as i16));
}

/// A message with an empty body (ParseComplete '1', BindComplete '2',
/// CloseComplete '3', NoData 'n', EmptyQueryResponse 'I', CopyDone 'c').
pub fn empty(buf: &mut BytesMut, tag: u8) {
    buf.put_u8(tag);
    buf.put_i32(4);
}

/// A simple query message ('Q').
pub fn query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(b'Q');
    buf.put_i32((4 + sql.len() + 1) as i32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// A Sync message ('S').
pub fn sync(buf: &mut BytesMut) {
    empty(buf, b'S');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::codec::frame::peek_frame;

    #[test]
    fn builders_produce_whole_frames() {
        let mut b = BytesMut::new();
        ready_for_query(&mut b, b'T');
        row_description_text(&mut b, &["a", "b"]);
        data_row_text(&mut b, &[Some("x"), None]);
        command_complete(&mut b, "SELECT 1");
        query(&mut b, "select 1");
        let mut rest = &b[..];
        let mut tags = vec![];
        while let Some(f) = peek_frame(rest, 1 << 20).unwrap() {
            tags.push(f.tag);
            rest = &rest[f.len..];
        }
        assert!(rest.is_empty());
        assert_eq!(tags, b"ZTDCQ");
        assert_eq!(b[5], b'T');
    }
}
