//! Nubo's five values in PostgreSQL's types, and PostgreSQL's errors in
//! the guest's terms.
//!
//! A parameter takes the type PostgreSQL infers for its place: an integer
//! goes to an `int4` column as `int4`, to a `float8` as `float8`, to a
//! `bool` as true when not 0. Text goes in PostgreSQL's text format, so
//! that the server parses it as the column's type (`timestamptz`, `uuid`,
//! `jsonb`, `numeric`, an enum): no type needs a variant of its own.
//!
//! A column comes back as the value closest to it: integers and `bool`
//! as integers, floats as reals, `numeric`, dates and times, `uuid` and
//! `json` as their text, `bytea` as a blob. A column of another type
//! (an array, a range, a geometric type) is refused with the cast to
//! write.

use crate::{SqlError, Value};
use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{Format, IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn Error + Sync + Send>;

/// A parameter bound to whatever type its place has.
#[derive(Debug)]
pub(crate) struct Param<'a>(pub &'a Value);

impl Param<'_> {
    /// Whether the value goes in binary (else as text the server parses).
    fn binary(&self, ty: &Type) -> bool {
        let ty = base(ty);
        match self.0 {
            Value::Null => true,
            Value::Integer(_) => matches!(
                *ty,
                Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::BOOL
            ),
            Value::Real(_) => matches!(*ty, Type::FLOAT4 | Type::FLOAT8),
            Value::Text(_) => false,
            Value::Blob(_) => true,
        }
    }
}

/// The type a domain is over.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        _ => ty,
    }
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let t = base(ty);
        match self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::Integer(i) if self.binary(ty) => match *t {
                Type::INT2 => i16::try_from(*i)
                    .map_err(|_| format!("{i} is out of range for smallint"))?
                    .to_sql(t, out),
                Type::INT4 => i32::try_from(*i)
                    .map_err(|_| format!("{i} is out of range for integer"))?
                    .to_sql(t, out),
                Type::FLOAT4 => (*i as f32).to_sql(t, out),
                Type::FLOAT8 => (*i as f64).to_sql(t, out),
                Type::BOOL => (*i != 0).to_sql(t, out),
                _ => i.to_sql(t, out),
            }
            .map(|_| ())?,
            Value::Real(f) if self.binary(ty) => match *t {
                Type::FLOAT4 => (*f as f32).to_sql(t, out).map(|_| ())?,
                _ => f.to_sql(t, out).map(|_| ())?,
            },
            Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Value::Real(f) => out.extend_from_slice(f.to_string().as_bytes()),
            Value::Text(s) => out.extend_from_slice(s.as_bytes()),
            Value::Blob(b) if *t == Type::BYTEA => out.extend_from_slice(b),
            Value::Blob(_) => {
                return Err(format!("a blob cannot go where PostgreSQL expects `{ty}`").into());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        if self.binary(ty) {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

/// One column of a row as a [`Value`]; `Err` names the type it cannot
/// carry.
pub(crate) fn cell(row: &tokio_postgres::Row, i: usize) -> Result<Value, SqlError> {
    let column = &row.columns()[i];
    row.try_get::<_, Cell>(i)
        .map(|c| c.0)
        .map_err(|_| {
            SqlError::Other(format!(
                "column `{}` is of PostgreSQL type `{}`, which Nubo's SQL values do not carry; cast it in the query (`{}::text`)",
                column.name(),
                column.type_(),
                column.name()
            ))
        })
}

struct Cell(Value);

impl<'a> tokio_postgres::types::FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode(base(ty), raw).map(Cell)
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

fn decode(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
    use tokio_postgres::types::FromSql;
    let text = |b: &[u8]| -> Result<Value, BoxError> {
        Ok(Value::Text(std::str::from_utf8(b)?.to_string()))
    };
    Ok(match *ty {
        Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
        Type::INT2 => Value::Integer(i16::from_sql(ty, raw)?.into()),
        Type::INT4 => Value::Integer(i32::from_sql(ty, raw)?.into()),
        Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
        Type::OID => Value::Integer(u32::from_sql(ty, raw)?.into()),
        Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
        Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::NUMERIC => Value::Text(numeric(raw)?),
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => text(json)?,
            _ => return Err("unknown jsonb version".into()),
        },
        Type::UUID => {
            let h = hex::encode(raw);
            if h.len() != 32 {
                return Err("a uuid is 16 bytes".into());
            }
            Value::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Type::DATE => Value::Text(NaiveDate::from_sql(ty, raw)?.to_string()),
        Type::TIME => Value::Text(NaiveTime::from_sql(ty, raw)?.to_string()),
        Type::TIMESTAMP => Value::Text(NaiveDateTime::from_sql(ty, raw)?.to_string()),
        Type::TIMESTAMPTZ => Value::Text(
            DateTime::<Utc>::from_sql(ty, raw)?
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::XML => text(raw)?,
        _ if matches!(ty.kind(), Kind::Enum(_)) || ty.name() == "citext" => text(raw)?,
        _ => return Err(format!("type `{ty}`").into()),
    })
}

/// PostgreSQL's binary `numeric` (base-10000 digits) as its decimal text.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short numeric".into())
    };
    let (n, weight, sign, scale) = (
        word(0)? as usize,
        word(1)? as i16,
        word(2)?,
        word(3)? as usize,
    );
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..n)
        .map(|i| word(4 + i))
        .collect::<Result<Vec<u16>, _>>()?;
    let mut int = String::new();
    for w in 0..=weight.max(-1) {
        let d = digits.get(w as usize).copied().unwrap_or(0);
        if int.is_empty() {
            if d != 0 {
                int = d.to_string();
            }
        } else {
            int.push_str(&format!("{d:04}"));
        }
    }
    if int.is_empty() {
        int.push('0');
    }
    let mut frac = String::new();
    let mut w = weight as i32 + 1;
    while frac.len() < scale {
        let d = if w < 0 {
            0
        } else {
            digits.get(w as usize).copied().unwrap_or(0)
        };
        frac.push_str(&format!("{d:04}"));
        w += 1;
    }
    frac.truncate(scale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(match scale {
        0 => format!("{sign}{int}"),
        _ => format!("{sign}{int}.{frac}"),
    })
}

/// PostgreSQL's error in the guest's terms. `rewritten` maps a syntax
/// error's position back to the statement the guest wrote.
pub(crate) fn classify(
    e: tokio_postgres::Error,
    timeout_ms: u64,
    rewritten: Option<&super::lex::Rewritten>,
) -> SqlError {
    use tokio_postgres::error::{ErrorPosition, SqlState};
    let Some(db) = e.as_db_error() else {
        let mut message = format!("PostgreSQL: {e}");
        let mut cause = e.source();
        while let Some(c) = cause {
            message.push_str(&format!(": {c}"));
            cause = c.source();
        }
        return SqlError::Other(message);
    };
    let message = db.message().to_string();
    let code = db.code();
    if code.code().starts_with("23") {
        return SqlError::Constraint {
            name: db.constraint().map(str::to_string),
            message: match db.detail() {
                Some(d) => format!("{message} ({d})"),
                None => message,
            },
        };
    }
    match *code {
        SqlState::SYNTAX_ERROR => {
            let offset = match (db.position(), rewritten) {
                (Some(ErrorPosition::Original(p)), Some(r)) => {
                    let chars = (*p as usize).saturating_sub(1);
                    let byte = r
                        .text
                        .char_indices()
                        .nth(chars)
                        .map_or(r.text.len(), |(b, _)| b);
                    u32::try_from(r.original(byte)).ok()
                }
                _ => None,
            };
            SqlError::Syntax { message, offset }
        }
        SqlState::QUERY_CANCELED => SqlError::Timeout(timeout_ms),
        SqlState::T_R_SERIALIZATION_FAILURE
        | SqlState::T_R_DEADLOCK_DETECTED
        | SqlState::LOCK_NOT_AVAILABLE
        | SqlState::TOO_MANY_CONNECTIONS => SqlError::Busy(message),
        SqlState::PROGRAM_LIMIT_EXCEEDED | SqlState::DISK_FULL | SqlState::OUT_OF_MEMORY => {
            SqlError::TooLarge(message)
        }
        _ => SqlError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::numeric;

    fn raw(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn numerics_read_as_their_decimal_text() {
        // 12345.678: digits 1, 2345, 6780; weight 1; scale 3.
        assert_eq!(
            numeric(&raw(&[3, 1, 0, 3, 1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.05: digit 500 at weight -1, scale 2.
        assert_eq!(
            numeric(&raw(&[1, 0xFFFF, 0x4000, 2, 500])).unwrap(),
            "-0.05"
        );
        // 10000: digit 1 at weight 1, scale 0.
        assert_eq!(numeric(&raw(&[1, 1, 0, 0, 1])).unwrap(), "10000");
        assert_eq!(numeric(&raw(&[0, 0, 0, 0])).unwrap(), "0");
    }
}
