//! Protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`), as kubectl's
//! imperative commands (`create configmap|secret|deployment|job|...`, `run`) and every typed
//! client-go client send them. client-go does not fall back to JSON, so without this the fake
//! cannot be driven by those commands.
//!
//! Mirrors kube-apiserver's protobuf serializer (k8s.io/apimachinery runtime/serializer/protobuf):
//! the body is the 4-byte magic `k8s\0`, then a `runtime.Unknown` message
//! (1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType) whose `raw` is
//! the object's own message (k8s.io/api generated.proto). The object is turned into the JSON
//! the same Go object marshals to, and the create/update paths take it from there unchanged.
//!
//! The field tables (`schema.rs`) are generated from the Go types themselves (see
//! scripts/gen_protobuf_schema.py): Go's marshaller writes every non-pointer field even when
//! zero, so only the Go declaration tells `replicas: 0` (a set pointer: kept) from
//! `workingDir: ""` (omitempty: dropped).
//!
//! Responses stay JSON: clients ask `Accept: application/vnd.kubernetes.protobuf,
//! application/json` and decode whatever the response's Content-Type says.

use base64::Engine;
use serde_json::{json, Map as JsonMap, Value};

use crate::api_error::ApiError;
use crate::registry::ResourceType;

#[rustfmt::skip]
mod schema;

/// The media type client-go sends protobuf bodies with.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The prefix every protobuf-encoded object starts with (`protoEncodingPrefix` upstream).
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// What a field holds. `M` is another message of the table; the others are apimachinery
/// types with their own protobuf and JSON forms.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    M(u16),
    Time,
    MicroTime,
    Quantity,
    IntOrString,
    FieldsV1,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Card {
    One,
    /// A Go slice: a repeated field.
    Rep,
    /// A Go map with string keys: repeated `{1: key, 2: value}` entries.
    Map,
}

/// `json:",omitempty"`
pub(crate) const OMIT: u8 = 1;
/// A Go pointer: absent on the wire when nil, kept in JSON when set, even to zero.
pub(crate) const PTR: u8 = 2;
/// An embedded struct with `json:",inline"`: a nested message whose fields JSON promotes.
pub(crate) const INLINE: u8 = 4;

pub(crate) struct Field {
    tag: u32,
    json: &'static str,
    ty: Ty,
    card: Card,
    flags: u8,
}

pub(crate) const fn f(tag: u32, json: &'static str, ty: Ty, card: Card, flags: u8) -> Field {
    Field {
        tag,
        json,
        ty,
        card,
        flags,
    }
}

pub(crate) struct Msg {
    /// The Go type (for error messages and the generated file's reader).
    #[allow(dead_code)]
    name: &'static str,
    fields: &'static [Field],
}

/// Whether a Content-Type is the Kubernetes protobuf one (parameters ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(CONTENT_TYPE)
}

fn root(api_version: &str, kind: &str) -> Option<u16> {
    schema::ROOTS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|r| r.2)
}

/// Whether protobuf bodies for this resource type can be decoded.
pub fn decodable(rt: &ResourceType) -> bool {
    root(&rt.api_version(), rt.kind).is_some()
}

/// The answer for a protobuf body to a type without a protobuf form: what the real server
/// answers for custom resources (apiextensions-apiserver serves them as JSON and YAML only).
/// The same goes here for the CustomResourceDefinition type itself, which upstream does
/// decode from protobuf; the fake has no table for it.
pub fn unsupported_media_type() -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
    )
}

/// Decode a protobuf request body for a resource of type `rt` into the JSON object the same Go
/// object marshals to, with `apiVersion` and `kind` from the envelope (or, when the envelope
/// leaves them empty, the resource's: the serializer's default GVK upstream).
pub fn decode_body(rt: &ResourceType, body: &[u8]) -> Result<Value, ApiError> {
    if !decodable(rt) {
        return Err(unsupported_media_type());
    }
    let raw = body.strip_prefix(&MAGIC[..]).ok_or_else(|| {
        ApiError::bad_request(format!(
            "provided data does not appear to be a protobuf message, expected prefix {:?}",
            MAGIC
        ))
    })?;
    let env = Envelope::parse(raw).map_err(decode_error)?;
    if !env.content_encoding.is_empty() {
        return Err(ApiError::bad_request(format!(
            "unsupported content encoding {:?} of the protobuf body",
            env.content_encoding
        )));
    }
    let api_version = non_empty(env.api_version).unwrap_or_else(|| rt.api_version());
    let kind = non_empty(env.kind).unwrap_or_else(|| rt.kind.to_string());
    let Some(idx) = root(&api_version, &kind) else {
        // runtime.Scheme's notRegisteredErr, as the decoder reports it.
        return Err(ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {api_version:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        )));
    };
    let mut obj = JsonMap::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    obj.extend(decode_message(idx, env.raw).map_err(decode_error)?);
    Ok(Value::Object(obj))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn decode_error(e: String) -> ApiError {
    ApiError::bad_request(format!("error decoding body: {e}"))
}

/// `runtime.Unknown`, the envelope around every protobuf object.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, String> {
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut r = Reader::new(buf);
        while let Some((tag, v)) = r.next()? {
            match (tag, v) {
                (1, Raw::Len(type_meta)) => {
                    let mut t = Reader::new(type_meta);
                    while let Some((tag, v)) = t.next()? {
                        match (tag, v) {
                            (1, Raw::Len(s)) => env.api_version = string(s),
                            (2, Raw::Len(s)) => env.kind = string(s),
                            _ => {}
                        }
                    }
                }
                (2, Raw::Len(raw)) => env.raw = raw,
                (3, Raw::Len(s)) => env.content_encoding = string(s),
                // 4 contentType: empty or protobuf, the serializer does not look at it.
                _ => {}
            }
        }
        Ok(env)
    }
}

/// One field value as it is on the wire.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8]),
    Fixed32,
}

impl Raw<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Raw::Varint(_) => 0,
            Raw::Fixed64 => 1,
            Raw::Len(_) => 2,
            Raw::Fixed32 => 5,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("unexpected EOF")?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err("proto: integer overflow".into());
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err("proto: integer overflow".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("unexpected EOF")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u32, Raw<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (tag, wire) = (key >> 3, key & 7);
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(format!("proto: illegal tag {tag} (wire type {wire})"));
        }
        let v = match wire {
            0 => Raw::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Raw::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "unexpected EOF")?;
                Raw::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Raw::Fixed32
            }
            _ => return Err(format!("proto: illegal wireType {wire}")),
        };
        Ok(Some((tag as u32, v)))
    }
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wrong_wire(raw: &Raw, field: &str) -> String {
    format!(
        "proto: wrong wireType = {} for field {field}",
        raw.wire_type()
    )
}

fn len_of<'a>(raw: &Raw<'a>, field: &str) -> Result<&'a [u8], String> {
    match raw {
        Raw::Len(b) => Ok(b),
        other => Err(wrong_wire(other, field)),
    }
}

/// Decode message `idx` of the table into the JSON object Go's encoding/json writes for the
/// decoded struct. Unknown field numbers are skipped, as the generated Go unmarshallers do.
fn decode_message(idx: u16, buf: &[u8]) -> Result<JsonMap<String, Value>, String> {
    let msg = &schema::MESSAGES[usize::from(idx)];
    let mut seen: Vec<Vec<Raw>> = vec![Vec::new(); msg.fields.len()];
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = r.next()? {
        if let Some(i) = msg.fields.iter().position(|f| f.tag == tag) {
            seen[i].push(v);
        }
    }
    let mut out = JsonMap::new();
    for (field, values) in msg.fields.iter().zip(&seen) {
        emit(field, values, &mut out)?;
    }
    Ok(out)
}

/// A message value: repeated occurrences of a singular message field merge, which for the
/// wire format is the same as decoding their concatenation.
fn joined<'a>(values: &[Raw<'a>], field: &str) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    match values {
        [] => Ok(std::borrow::Cow::Borrowed(&[])),
        [one] => Ok(std::borrow::Cow::Borrowed(len_of(one, field)?)),
        many => {
            let mut all = Vec::new();
            for v in many {
                all.extend_from_slice(len_of(v, field)?);
            }
            Ok(std::borrow::Cow::Owned(all))
        }
    }
}

fn emit(field: &Field, values: &[Raw], out: &mut JsonMap<String, Value>) -> Result<(), String> {
    let name = field.json;
    let omit = field.flags & OMIT != 0;
    let ptr = field.flags & PTR != 0;
    match field.card {
        Card::One => {
            // A nil pointer is not on the wire, and not in the JSON.
            if values.is_empty() && ptr {
                return Ok(());
            }
            match field.ty {
                Ty::M(idx) => {
                    // Go's encoding/json never omits a struct, empty or not.
                    let obj = decode_message(idx, &joined(values, name)?)?;
                    if field.flags & INLINE != 0 {
                        out.extend(obj);
                    } else {
                        out.insert(name.into(), Value::Object(obj));
                    }
                }
                Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64 => {
                    // Singular scalar: the last occurrence wins.
                    let v = match values.last() {
                        Some(raw) => scalar(field.ty, raw, name)?,
                        None => zero(field.ty),
                    };
                    // omitempty drops a zero non-pointer value; a set pointer stays.
                    if !(omit && !ptr && is_zero(&v)) {
                        out.insert(name.into(), v);
                    }
                }
                special => {
                    let v = special_value(special, &joined(values, name)?)?;
                    out.insert(name.into(), v);
                }
            }
        }
        Card::Rep => {
            let mut items = Vec::new();
            for raw in values {
                match (field.ty, raw) {
                    (Ty::M(idx), _) => {
                        items.push(Value::Object(decode_message(idx, len_of(raw, name)?)?))
                    }
                    // A packed run of varints (proto3 style; Go accepts both forms).
                    (Ty::Bool | Ty::I32 | Ty::I64, Raw::Len(b)) => {
                        let mut r = Reader::new(b);
                        while r.pos < b.len() {
                            items.push(scalar(field.ty, &Raw::Varint(r.varint()?), name)?);
                        }
                    }
                    (Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64, _) => {
                        items.push(scalar(field.ty, raw, name)?)
                    }
                    (special, _) => items.push(special_value(special, len_of(raw, name)?)?),
                }
            }
            // A nil slice: omitted with omitempty, else `null`.
            if !items.is_empty() {
                out.insert(name.into(), Value::Array(items));
            } else if !omit {
                out.insert(name.into(), Value::Null);
            }
        }
        Card::Map => {
            let mut map = JsonMap::new();
            for raw in values {
                let (key, value) = map_entry(field.ty, len_of(raw, name)?, name)?;
                map.insert(key, value);
            }
            if !map.is_empty() {
                out.insert(name.into(), Value::Object(map));
            } else if !omit {
                out.insert(name.into(), Value::Null);
            }
        }
    }
    Ok(())
}

/// A map entry message: `{1: key, 2: value}`; a missing value is the type's zero.
fn map_entry(ty: Ty, buf: &[u8], name: &str) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value: Option<Raw> = None;
    let mut r = Reader::new(buf);
    while let Some((tag, v)) = r.next()? {
        match tag {
            1 => key = string(len_of(&v, name)?),
            2 => value = Some(v),
            _ => {}
        }
    }
    let v = match (ty, value) {
        (Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64, Some(raw)) => scalar(ty, &raw, name)?,
        (Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64, None) => zero(ty),
        (Ty::M(idx), v) => {
            let b = v.map(|raw| len_of(&raw, name)).transpose()?;
            Value::Object(decode_message(idx, b.unwrap_or(&[]))?)
        }
        (special, v) => {
            let b = v.map(|raw| len_of(&raw, name)).transpose()?;
            special_value(special, b.unwrap_or(&[]))?
        }
    };
    Ok((key, v))
}

fn scalar(ty: Ty, raw: &Raw, name: &str) -> Result<Value, String> {
    Ok(match (ty, raw) {
        (Ty::Str, Raw::Len(b)) => json!(string(b)),
        // []byte marshals as standard base64 (Secret data, ConfigMap binaryData).
        (Ty::Bytes, Raw::Len(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Bool, Raw::Varint(v)) => json!(*v != 0),
        // int32 as Go converts it: the low 32 bits (negative values come sign-extended).
        (Ty::I32, Raw::Varint(v)) => json!(*v as i32),
        (Ty::I64, Raw::Varint(v)) => json!(*v as i64),
        (_, other) => return Err(wrong_wire(other, name)),
    })
}

fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!(""),
        Ty::Bool => json!(false),
        Ty::I32 | Ty::I64 => json!(0),
        // A nil []byte.
        _ => Value::Null,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// The fields of a small message, for the apimachinery types decoded by hand.
fn fields_of(buf: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, String> {
    let mut r = Reader::new(buf);
    let mut out = Vec::new();
    while let Some(fv) = r.next()? {
        out.push(fv);
    }
    Ok(out)
}

fn varint_field(fields: &[(u32, Raw)], tag: u32) -> u64 {
    fields
        .iter()
        .rev()
        .find_map(|(t, v)| match v {
            Raw::Varint(x) if *t == tag => Some(*x),
            _ => None,
        })
        .unwrap_or(0)
}

fn string_field(fields: &[(u32, Raw)], tag: u32) -> String {
    fields
        .iter()
        .rev()
        .find_map(|(t, v)| match v {
            Raw::Len(b) if *t == tag => Some(string(b)),
            _ => None,
        })
        .unwrap_or_default()
}

/// The apimachinery types with custom protobuf and JSON forms.
fn special_value(ty: Ty, buf: &[u8]) -> Result<Value, String> {
    let fields = fields_of(buf)?;
    Ok(match ty {
        // metav1.Time / MicroTime: Timestamp {1 seconds, 2 nanos}. A zero time is marshalled
        // as an empty message and comes back as JSON null. Time marshals to RFC 3339 in whole
        // seconds (UTC), MicroTime with six fractional digits.
        Ty::Time | Ty::MicroTime => {
            if buf.is_empty() {
                return Ok(Value::Null);
            }
            let secs = varint_field(&fields, 1) as i64;
            let nanos = varint_field(&fields, 2) as i32;
            // Go's zero time.Time (year 1) is IsZero and marshals as null too.
            if secs == -62_135_596_800 && nanos == 0 {
                return Ok(Value::Null);
            }
            let micro = matches!(ty, Ty::MicroTime);
            let t = chrono::DateTime::from_timestamp(
                secs,
                if micro {
                    u32::try_from(nanos).unwrap_or(0)
                } else {
                    0
                },
            )
            .ok_or_else(|| format!("timestamp out of range: {secs}s"))?;
            let format = if micro {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            } else {
                "%Y-%m-%dT%H:%M:%SZ"
            };
            json!(t.format(format).to_string())
        }
        // resource.Quantity: {1 string}; the zero Quantity marshals as "0". The string is kept
        // as sent, as the JSON path keeps it.
        Ty::Quantity => {
            let s = string_field(&fields, 1);
            json!(if s.is_empty() { "0".to_string() } else { s })
        }
        // intstr.IntOrString: {1 type (0 int, 1 string), 2 intVal, 3 strVal}.
        Ty::IntOrString => {
            if varint_field(&fields, 1) == 1 {
                json!(string_field(&fields, 3))
            } else {
                json!(varint_field(&fields, 2) as i32)
            }
        }
        // metav1.FieldsV1: {1 Raw}, the JSON of the field set itself.
        Ty::FieldsV1 => {
            let raw = fields
                .iter()
                .rev()
                .find_map(|(t, v)| match v {
                    Raw::Len(b) if *t == 1 => Some(*b),
                    _ => None,
                })
                .unwrap_or(&[]);
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(raw).map_err(|e| format!("fieldsV1: {e}"))?
            }
        }
        Ty::Str | Ty::Bytes | Ty::Bool | Ty::I32 | Ty::I64 | Ty::M(_) => {
            unreachable!("not a special type")
        }
    })
}
