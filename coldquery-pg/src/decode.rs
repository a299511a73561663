//! Rendering PostgreSQL values as JSON, losslessly (SPEC §2).
//!
//! Common types are decoded here from the binary wire format. Every other type — composites,
//! ranges, intervals, network types, extension types such as `hstore` — is rendered by the
//! server itself: the raw bytes are sent back as a parameter of the column's own type and
//! cast to `text` (see [`crate::run`]). So no type can make a result fail to render.

use postgres_types::{Kind, Type};
use serde_json::{Number, Value, json};

/// How a column's values are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Decoded here.
    Native,
    /// Rendered by the server as its text form.
    ServerText,
}

/// Decides how values of `ty` are rendered.
pub(crate) fn plan(ty: &Type) -> Plan {
    match ty.kind() {
        Kind::Enum(_) => Plan::Native,
        Kind::Array(elem) => plan(elem),
        // PostgreSQL describes a domain column as its base type, but an array of a domain
        // (`posint[]`) has the domain as its element type; its values use the base's format.
        Kind::Domain(base) => plan(base),
        _ if native(ty) => Plan::Native,
        _ => Plan::ServerText,
    }
}

fn native(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::NUMERIC
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UNKNOWN
            | Type::XML
            | Type::JSON
            | Type::JSONB
            | Type::BYTEA
            | Type::UUID
            | Type::DATE
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
    ) || ty.name() == "citext"
}

/// Decodes one non-NULL value of a [`Plan::Native`] type.
pub(crate) fn decode(ty: &Type, raw: &[u8]) -> Result<Value, String> {
    if let Kind::Array(elem) = ty.kind() {
        return decode_array(elem, raw);
    }
    match ty.kind() {
        Kind::Enum(_) => return text(raw),
        Kind::Domain(base) => return decode(base, raw),
        _ => {}
    }
    match *ty {
        Type::BOOL => Ok(Value::Bool(fixed::<1>(raw)?[0] != 0)),
        Type::INT2 => Ok(json!(i16::from_be_bytes(fixed(raw)?))),
        Type::INT4 => Ok(json!(i32::from_be_bytes(fixed(raw)?))),
        Type::INT8 => Ok(json!(i64::from_be_bytes(fixed(raw)?))),
        Type::OID => Ok(json!(u32::from_be_bytes(fixed(raw)?))),
        Type::FLOAT4 => {
            let f = f32::from_be_bytes(fixed(raw)?);
            // Through the shortest decimal form, so 0.1::float4 renders as 0.1, not 0.100000001.
            Ok(float(f.to_string().parse::<f64>().unwrap_or(f64::from(f))))
        }
        Type::FLOAT8 => Ok(float(f64::from_be_bytes(fixed(raw)?))),
        Type::NUMERIC => numeric(raw).map(Value::String),
        Type::JSON => serde_json::from_slice(raw).map_err(|e| e.to_string()),
        Type::JSONB => match raw.split_first() {
            Some((1, body)) => serde_json::from_slice(body).map_err(|e| e.to_string()),
            _ => Err("unknown jsonb version".into()),
        },
        Type::BYTEA => Ok(Value::String(hex(raw))),
        Type::UUID => uuid(raw).map(Value::String),
        Type::DATE => Ok(Value::String(date(i32::from_be_bytes(fixed(raw)?)))),
        Type::TIMESTAMP => Ok(Value::String(timestamp(i64::from_be_bytes(fixed(raw)?), ""))),
        Type::TIMESTAMPTZ => Ok(Value::String(timestamp(i64::from_be_bytes(fixed(raw)?), "Z"))),
        // "char" is one byte; everything else here is text in the database encoding (UTF-8).
        _ => text(raw),
    }
}

/// `\x` followed by lowercase hex, as PostgreSQL's `bytea_output = hex`.
pub(crate) fn hex(raw: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + raw.len() * 2);
    out.push_str("\\x");
    for b in raw {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn text(raw: &[u8]) -> Result<Value, String> {
    // Checked first as it should be (valid UTF-8); only invalid bytes take the lossy copy.
    Ok(Value::String(match std::str::from_utf8(raw) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(raw).into_owned(),
    }))
}

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => json!("NaN"),
        None if f > 0.0 => json!("Infinity"),
        None => json!("-Infinity"),
    }
}

fn uuid(raw: &[u8]) -> Result<String, String> {
    let b: [u8; 16] = fixed(raw)?;
    let h = hex(&b);
    let h = &h[2..];
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// Binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits).map(|i| word(4 + i)).collect::<Result<Vec<_>, _>>()?;
    let digit = |i: i64| -> u16 { usize::try_from(i).ok().and_then(|i| digits.get(i).copied()).unwrap_or(0) };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            push_padded(&mut out, u64::from(digit(i)), if i == 0 { 1 } else { 4 });
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = 1;
        while frac.len() < dscale {
            push_padded(&mut frac, u64::from(digit(weight + k)), 4);
            k += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Appends `n` in decimal, zero-padded to `width` digits. (Dates and timestamps are written
/// digit by digit: through `format!` they were a quarter of a 10 000-row read's instructions
/// with one `timestamptz` column in ten.)
fn push_padded(out: &mut String, n: u64, width: usize) {
    let digit = |n: u64| char::from(b'0' + (n % 10) as u8);
    // The common fields (months, days, hours..., years, numeric's base-10000 digits) directly.
    match (width, n) {
        (2, 0..100) => {
            out.push(digit(n / 10));
            out.push(digit(n));
            return;
        }
        (4, 0..10_000) => {
            out.push(digit(n / 1000));
            out.push(digit(n / 100));
            out.push(digit(n / 10));
            out.push(digit(n));
            return;
        }
        _ => {}
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len() - start..width {
        out.push('0');
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Appends the date `days_since_2000` as `YYYY-MM-DD`; true when it is BC.
fn push_ymd(out: &mut String, days_since_2000: i64) -> bool {
    let (year, month, day) = civil_from_days(days_since_2000 + PG_EPOCH_DAYS);
    // There is no year 0: 1 BC is year 0 of the proleptic calendar, as PostgreSQL prints it.
    let bc = year < 1;
    push_padded(out, (if bc { 1 - year } else { year }).unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(month), 2);
    out.push('-');
    push_padded(out, u64::from(day), 2);
    bc
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let mut out = String::with_capacity(13);
            if push_ymd(&mut out, i64::from(days)) {
                out.push_str(" BC");
            }
            out
        }
    }
}

fn timestamp(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    const DAY: i64 = 86_400_000_000;
    let mut out = String::with_capacity(32);
    let bc = push_ymd(&mut out, micros.div_euclid(DAY));
    let in_day = micros.rem_euclid(DAY).unsigned_abs();
    let secs = in_day / 1_000_000;
    let frac = in_day % 1_000_000;
    out.push('T');
    push_padded(&mut out, secs / 3600, 2);
    out.push(':');
    push_padded(&mut out, secs / 60 % 60, 2);
    out.push(':');
    push_padded(&mut out, secs % 60, 2);
    if frac != 0 {
        // Six digits of microseconds, without their trailing zeros.
        let mut frac = frac;
        let mut width = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        out.push('.');
        push_padded(&mut out, frac, width);
    }
    out.push_str(zone);
    if bc {
        out.push_str(" BC");
    }
    out
}

/// Binary arrays: ndim, has-null flag, element oid, (len, lower bound) per dimension, then
/// each element as length + bytes (-1 for NULL). Nested dimensions become nested JSON arrays.
fn decode_array(elem: &Type, raw: &[u8]) -> Result<Value, String> {
    let mut cur = Cursor(raw);
    let ndim = usize::try_from(cur.i32()?).map_err(|_| "negative dimensions")?;
    cur.i32()?; // has-null flag
    cur.i32()?; // element oid
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        dims.push(usize::try_from(cur.i32()?).map_err(|_| "negative dimension")?);
        cur.i32()?; // lower bound
    }
    if dims.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let total: usize = dims.iter().product();
    let mut flat = Vec::with_capacity(total);
    for _ in 0..total {
        let len = cur.i32()?;
        flat.push(if len < 0 { Value::Null } else { decode(elem, cur.take(len as usize)?)? });
    }
    Ok(nest(&dims, &mut flat.into_iter()))
}

fn nest(dims: &[usize], values: &mut impl Iterator<Item = Value>) -> Value {
    match dims.split_first() {
        Some((&n, [])) => Value::Array(values.take(n).collect()),
        Some((&n, rest)) => Value::Array((0..n).map(|_| nest(rest, values)).collect()),
        None => Value::Array(Vec::new()),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated array".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics() {
        assert_eq!(numeric(&num(2, 0, 0, 2, &[12, 3400])).unwrap(), "12.34");
        assert_eq!(numeric(&num(1, -1, 0x4000, 4, &[5])).unwrap(), "-0.0005");
        assert_eq!(numeric(&num(2, 1, 0, 0, &[1, 2])).unwrap(), "10002");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(0, 0, 0, 3, &[])).unwrap(), "0.000");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert_eq!(numeric(&num(1, 2, 0, 0, &[7])).unwrap(), "700000000");
        assert_eq!(numeric(&num(3, 1, 0, 6, &[12, 7, 30])).unwrap(), "120007.003000");
        assert_eq!(numeric(&num(1, 0, 0, 0, &[12_345])).unwrap(), "12345", "a malformed digit is kept whole");
    }

    #[test]
    fn text_is_kept_and_invalid_bytes_replaced() {
        assert_eq!(text("é ☃ \"x\"".as_bytes()).unwrap(), json!("é ☃ \"x\""));
        assert_eq!(text(b"a\xffb\xc3").unwrap(), json!("a\u{fffd}b\u{fffd}"));
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(date(-730_119 - 366), "0001-01-01 BC");
        assert_eq!(date(-730_119), "0001-01-01");
        assert_eq!(timestamp(0, ""), "2000-01-01T00:00:00");
        assert_eq!(timestamp(1_500_000, "Z"), "2000-01-01T00:00:01.5Z");
        assert_eq!(timestamp(-1, ""), "1999-12-31T23:59:59.999999");
        assert_eq!(timestamp(i64::MIN, "Z"), "-infinity");
        assert_eq!(timestamp(-63_082_281_600_000_000 - 1, "Z"), "0001-12-31T23:59:59.999999Z BC");
        assert_eq!(timestamp(9_223_371_331_199_999_999, ""), "294276-12-31T23:59:59.999999");
        assert_eq!(timestamp(10, ""), "2000-01-01T00:00:00.00001");
    }

    /// What `format!` wrote before the digit-by-digit formatting.
    fn timestamp_by_format(micros: i64, zone: &str) -> String {
        const DAY: i64 = 86_400_000_000;
        let (year, month, day) = civil_from_days(micros.div_euclid(DAY) + PG_EPOCH_DAYS);
        let (year, bc) = if year >= 1 { (year, false) } else { (1 - year, true) };
        let in_day = micros.rem_euclid(DAY);
        let (secs, frac) = (in_day / 1_000_000, in_day % 1_000_000);
        let mut out =
            format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        if frac != 0 {
            out.push('.');
            out.push_str(format!("{frac:06}").trim_end_matches('0'));
        }
        out.push_str(zone);
        if bc {
            out.push_str(" BC");
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn timestamps_and_dates_are_written_as_format_writes_them(
            micros in -211_813_488_000_000_000i64..9_223_371_331_200_000_000,
            days in -2_451_545i32..2_147_483_494,
        ) {
            proptest::prop_assert_eq!(timestamp(micros, "Z"), timestamp_by_format(micros, "Z"));
            let (year, month, day) = civil_from_days(i64::from(days) + PG_EPOCH_DAYS);
            let expected = if year >= 1 {
                format!("{year:04}-{month:02}-{day:02}")
            } else {
                format!("{:04}-{month:02}-{day:02} BC", 1 - year)
            };
            proptest::prop_assert_eq!(date(days), expected);
        }
    }

    #[test]
    fn floats_and_specials() {
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(decode(&Type::FLOAT4, &0.1f32.to_be_bytes()).unwrap(), json!(0.1));
    }

    #[test]
    fn arrays_nest() {
        let mut raw = Vec::new();
        for v in [2i32, 0, 23, 2, 1, 2, 1] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        for v in [1i32, 2, 3, 4] {
            raw.extend_from_slice(&4i32.to_be_bytes());
            raw.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(decode(&Type::INT4_ARRAY, &raw).unwrap(), json!([[1, 2], [3, 4]]));
    }
}
