//! What of an object is decoded, declared once with the struct that reads it.
//!
//! A view's input is a struct of [`Checked`] fields declared with `shaped!`, which writes the
//! struct's serde derive (unknown fields skipped, strings borrowed from the input): the
//! request, watch and manifest decoders keep of an object what its structs name, and nothing
//! else.
//! A [`Checked`] field never fails a decode: a value of the wrong type is kept as a description
//! of what was there, and becomes a [`FieldError`] naming its path only when a reader reads it,
//! so a rule that never looks at a field never reports it.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A field that is present but not of the type Kubernetes defines for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {expected}, found {found}")]
pub struct FieldError {
    pub path: String,
    pub expected: &'static str,
    pub found: String,
}

/// `text` cut to at most `max` characters, marked with an ellipsis where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… ({} bytes in all)", &text[..end], text.len()),
    }
}

/// What stood where a field of another type belongs, as messages describe it.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Null,
    Bool(bool),
    Number(Number),
    /// Clipped.
    String(Box<str>),
    List,
    Map,
}

impl Found {
    /// A string, cut short: a wrong value is quoted in a message, and may be megabytes.
    fn string(text: &str) -> Found {
        Found::String(clip(text, 100).into())
    }

    pub fn of(value: &Value) -> Found {
        match value {
            Value::Null => Found::Null,
            Value::Bool(b) => Found::Bool(*b),
            Value::Number(n) => Found::Number(n.clone()),
            Value::String(s) => Found::string(s),
            Value::Array(_) => Found::List,
            Value::Object(_) => Found::Map,
        }
    }

    /// The error for a field at `path` that should have been `expected`.
    pub fn at(&self, path: &str, expected: &'static str) -> FieldError {
        FieldError {
            path: path.to_string(),
            expected,
            found: self.to_string(),
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Found::Null => f.write_str("null"),
            Found::Bool(b) => write!(f, "boolean {b}"),
            Found::Number(n) => write!(f, "number {n}"),
            Found::String(s) => write!(f, "string {s:?}"),
            Found::List => f.write_str("a list"),
            Found::Map => f.write_str("a map"),
        }
    }
}

/// A field as decoded: absent (or null), of its type, or of another type.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Checked<T> {
    #[default]
    Absent,
    Found(T),
    Wrong(Found),
}

/// What a field of this type must be, for messages.
pub trait Expected {
    const EXPECTED: &'static str;
}

/// A type a [`Checked`] field can hold: each way in answers `None` when the value is not of
/// this type (the caller records what it was).
pub trait Decoded<'de>: Expected + Sized {
    fn from_str(_text: Cow<'de, str>) -> Option<Self> {
        None
    }
    fn from_number(_number: &Number) -> Option<Self> {
        None
    }
    fn from_bool(_value: bool) -> Option<Self> {
        None
    }
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<T: Expected> Checked<T> {
    /// The value, `None` when absent or null; of another type, an error naming `path`.
    pub fn get(&self, path: &str) -> Result<Option<&T>, FieldError> {
        match self {
            Checked::Absent => Ok(None),
            Checked::Found(value) => Ok(Some(value)),
            Checked::Wrong(found) => Err(found.at(path, T::EXPECTED)),
        }
    }

    /// A field of this map (absent when the map is), or an error naming `path` when this is
    /// not a map: `spec: 5` is a wrong type, not a missing spec.
    pub fn field<'s, U>(
        &'s self,
        path: &str,
        field: impl FnOnce(&'s T) -> &'s Checked<U>,
    ) -> Result<&'s Checked<U>, FieldError> {
        Ok(match self.get(path)? {
            Some(map) => field(map),
            None => &Checked::Absent,
        })
    }
}

impl<T: Expected> Checked<T> {
    /// An item of the list at `list`, `None` when null; of another type, an error naming
    /// `list[index]` (written only then).
    pub fn item(&self, list: &str, index: usize) -> Result<Option<&T>, FieldError> {
        match self {
            Checked::Wrong(found) => Err(found.at(&format!("{list}[{index}]"), T::EXPECTED)),
            checked => checked.get(""),
        }
    }

    /// Present and not null, whatever its type.
    pub fn is_present(&self) -> bool {
        !matches!(self, Checked::Absent)
    }
}

impl<T> Checked<Vec<T>> {
    /// The items, none when absent or null; of another type, an error naming `path`.
    pub fn items(&self, path: &str) -> Result<&[T], FieldError> {
        Ok(self.get(path)?.map_or(&[], Vec::as_slice))
    }
}

impl FieldError {
    /// The same error of a field of item `index` of the list at `list`.
    pub fn within(mut self, list: &str, index: usize) -> Self {
        self.path = format!("{list}[{index}].{}", self.path);
        self
    }
}

impl Checked<Cow<'_, str>> {
    pub fn str(&self, path: &str) -> Result<Option<&str>, FieldError> {
        Ok(self.get(path)?.map(|s| &**s))
    }
}

impl Checked<i64> {
    pub fn int(&self, path: &str) -> Result<Option<i64>, FieldError> {
        Ok(self.get(path)?.copied())
    }

    /// An int32 field of the API (replicas, ordinals, partitions): a larger number is not one
    /// the API server stores, and sums of int32 values cannot overflow.
    pub fn int32(&self, path: &str) -> Result<Option<i64>, FieldError> {
        match self.int(path)? {
            Some(v) if i32::try_from(v).is_err() => Err(FieldError {
                path: path.to_string(),
                expected: "an integer that fits in 32 bits",
                found: v.to_string(),
            }),
            other => Ok(other),
        }
    }
}

impl<'de, T: Decoded<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckedVisitor(PhantomData))
    }
}

struct CheckedVisitor<T>(PhantomData<T>);

impl<T> CheckedVisitor<T> {
    fn or_wrong(found: Option<T>, wrong: impl FnOnce() -> Found) -> Checked<T> {
        match found {
            Some(value) => Checked::Found(value),
            None => Checked::Wrong(wrong()),
        }
    }
}

impl<'de, T: Decoded<'de>> Visitor<'de> for CheckedVisitor<T> {
    type Value = Checked<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Checked<T>, E> {
        Ok(Checked::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Checked<T>, E> {
        Ok(Checked::Absent)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Checked<T>, D::Error> {
        Checked::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Checked<T>, E> {
        Ok(Self::or_wrong(T::from_bool(v), || Found::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Checked<T>, E> {
        self.number(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Checked<T>, E> {
        self.number(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked<T>, E> {
        match Number::from_f64(v) {
            Some(n) => self.number(n),
            None => Ok(Checked::Absent),
        }
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Checked<T>, E> {
        Ok(Self::or_wrong(T::from_str(Cow::Borrowed(v)), || {
            Found::string(v)
        }))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Checked<T>, E> {
        Ok(Self::or_wrong(
            T::from_str(Cow::Owned(v.to_string())),
            || Found::string(v),
        ))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checked<T>, A::Error> {
        Ok(Self::or_wrong(T::from_seq(seq)?, || Found::List))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked<T>, A::Error> {
        Ok(Self::or_wrong(T::from_map(map)?, || Found::Map))
    }
}

impl<T> CheckedVisitor<T> {
    fn number<'de, E>(self, n: Number) -> Result<Checked<T>, E>
    where
        T: Decoded<'de>,
    {
        Ok(match T::from_number(&n) {
            Some(value) => Checked::Found(value),
            None => Checked::Wrong(Found::Number(n)),
        })
    }
}

impl Expected for Cow<'_, str> {
    const EXPECTED: &'static str = "a string";
}

impl<'de: 'a, 'a> Decoded<'de> for Cow<'a, str> {
    fn from_str(text: Cow<'de, str>) -> Option<Self> {
        Some(text)
    }
}

impl Expected for i64 {
    const EXPECTED: &'static str = "an integer";
}

impl Decoded<'_> for i64 {
    /// `3.0` is the integer 3, as serde_json's `as_i64`-or-integral-float reading has it.
    fn from_number(number: &Number) -> Option<Self> {
        number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        })
    }
}

impl<T> Expected for Vec<T> {
    const EXPECTED: &'static str = "a list";
}

/// Up to this many items a list's length hint is allocated at once. serde's own `Vec` stops at
/// 1 MiB, so that a list of 47,000 containers grew four times over (the request_path bench); a
/// list read from a decoded `Value` hints its exact length, and one read from JSON text none.
const MAX_PREALLOCATED_ITEMS: usize = 1 << 16;

impl<'de, T: Deserialize<'de>> Decoded<'de> for Vec<T> {
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED_ITEMS);
        let mut items = Vec::with_capacity(hint);
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Some(items))
    }
}

/// A field whose presence alone is read (a probe): any value but null.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Present;

impl Expected for Present {
    const EXPECTED: &'static str = "any value";
}

impl<'de> Decoded<'de> for Present {
    fn from_str(_text: Cow<'de, str>) -> Option<Self> {
        Some(Present)
    }
    fn from_number(_number: &Number) -> Option<Self> {
        Some(Present)
    }
    fn from_bool(_value: bool) -> Option<Self> {
        Some(Present)
    }
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Some(Present))
    }
    fn from_seq<A: SeqAccess<'de>>(mut seq: A) -> Result<Option<Self>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Some(Present))
    }
}

/// A field whose null is told from its absence: a patch adds a field that is absent and leaves
/// one that is null alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrNull<T> {
    /// Present, as `null`.
    pub null: bool,
    /// The value; absent when absent or null.
    pub value: Checked<T>,
}

impl<'de, T: Decoded<'de>> Deserialize<'de> for OrNull<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrNullVisitor<T>(PhantomData<T>);
        impl<'de, T: Decoded<'de>> Visitor<'de> for OrNullVisitor<T> {
            type Value = OrNull<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_none<E: de::Error>(self) -> Result<OrNull<T>, E> {
                Ok(OrNull {
                    null: true,
                    value: Checked::Absent,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<OrNull<T>, E> {
                self.visit_none()
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<OrNull<T>, D::Error> {
                Ok(OrNull {
                    null: false,
                    value: Checked::deserialize(d)?,
                })
            }
        }
        d.deserialize_option(OrNullVisitor(PhantomData))
    }
}

/// A map of strings (labels, a selector), in the order it came, each value checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrMap<'a>(pub Vec<(Cow<'a, str>, Checked<Cow<'a, str>>)>);

impl Expected for StrMap<'_> {
    const EXPECTED: &'static str = "a map of strings";
}

impl<'de: 'a, 'a> Decoded<'de> for StrMap<'a> {
    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<Str<'de>>()? {
            pairs.push((key.0, map.next_value()?));
        }
        Ok(Some(StrMap(pairs)))
    }
}

/// A string (a map key, a field) borrowed from the input where it has no escapes.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// Decodes `Checked<T>` from a value a decoder already kept (a view over a `DynamicObject`'s
/// data): absent when there is none.
pub fn checked<'v, T: Decoded<'v>>(value: Option<&'v Value>) -> Checked<T> {
    match value {
        None => Checked::Absent,
        // Reading a `Value` does not fail (its keys are strings, its map has no duplicate
        // key); were it to, the field reads as of the wrong type rather than as absent.
        Some(value) => {
            Checked::deserialize(value).unwrap_or_else(|_| Checked::Wrong(Found::of(value)))
        }
    }
}

/// [`checked`] of a value taken out of its object: the decode owns what it reads, so that it
/// outlives the value (`check` keeps a StatefulSet's spec until it judges it).
pub fn checked_owned<T: Decoded<'static>>(value: Option<Value>) -> Checked<T> {
    match value {
        None => Checked::Absent,
        Some(value) => {
            let found = Found::of(&value);
            Checked::deserialize(value).unwrap_or(Checked::Wrong(found))
        }
    }
}

/// Declares a struct of [`Checked`] fields read from a JSON map, each field as
/// `"jsonName" name: Checked<T>` (a field whose type borrows takes `#[serde(borrow)]`): the
/// struct derives `Deserialize` with unknown fields skipped and absent ones [`Checked::Absent`],
/// and is itself a [`Decoded`] field type, so structs nest.
macro_rules! shaped {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<'a> {
            $( $(#[$field_meta:meta])* $key:literal $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default)]
        $vis struct $name<'a> {
            $( $(#[$field_meta])* #[serde(rename = $key)] pub $field: $ty, )*
            #[serde(skip)]
            _borrows: std::marker::PhantomData<&'a ()>,
        }

        impl $crate::shape::Expected for $name<'_> {
            const EXPECTED: &'static str = "a map";
        }

        impl<'de: 'a, 'a> $crate::shape::Decoded<'de> for $name<'a> {
            fn from_map<A: serde::de::MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                <Self as serde::Deserialize<'de>>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )
                .map(Some)
            }
        }
    };
}
pub(crate) use shaped;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_string_is_borrowed_from_the_input_unless_it_has_escapes() {
        let plain: Str = serde_json::from_str(r#""web-0""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("web-0")));
        let escaped: Str = serde_json::from_str(r#""web\u002d0""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "web-0"));
        let labels: Checked<StrMap> = serde_json::from_str(r#"{"app": "web"}"#).unwrap();
        let labels = labels.get("labels").unwrap().unwrap();
        assert!(matches!(labels.0[0].0, Cow::Borrowed("app")));
    }

    shaped! {
        struct Inner<'a> {
            #[serde(borrow)]
            "name" name: Checked<Cow<'a, str>>,
        }
    }

    shaped! {
        struct Outer<'a> {
            #[serde(borrow)]
            "inner" inner: Checked<Inner<'a>>,
            "count" count: Checked<i64>,
            #[serde(borrow)]
            "labels" labels: Checked<StrMap<'a>>,
            #[serde(borrow)]
            "items" items: Checked<Vec<Checked<Inner<'a>>>>,
        }
    }

    #[test]
    fn fields_of_their_type_decode_and_strings_are_borrowed() {
        let text = r#"{"inner": {"name": "web", "x": 1}, "count": 3.0, "labels": {"a": "1"},
                       "items": [{"name": "a"}], "other": [1, 2]}"#;
        let outer: Outer = serde_json::from_str(text).unwrap();
        let name = outer.inner.field("inner", |i| &i.name).unwrap();
        assert!(matches!(name, Checked::Found(Cow::Borrowed("web"))));
        assert_eq!(outer.count.int("count").unwrap(), Some(3));
        let Checked::Found(labels) = &outer.labels else {
            panic!("labels decode")
        };
        assert_eq!(labels.0[0].0, "a");
        assert_eq!(outer.items.get("items").unwrap().unwrap().len(), 1);
    }

    #[test]
    fn a_wrong_type_is_reported_when_read_and_only_then() {
        let outer: Outer = serde_json::from_str(
            r#"{"inner": 5, "count": "three", "labels": [1], "items": {"a": 1}}"#,
        )
        .unwrap();
        let error = |e: FieldError| e.to_string();
        assert_eq!(
            error(outer.inner.field("spec.inner", |i| &i.name).unwrap_err()),
            "spec.inner: expected a map, found number 5"
        );
        assert_eq!(
            error(outer.count.int("count").unwrap_err()),
            "count: expected an integer, found string \"three\""
        );
        assert_eq!(
            error(outer.labels.get("labels").unwrap_err()),
            "labels: expected a map of strings, found a list"
        );
        assert_eq!(
            error(outer.items.get("items").unwrap_err()),
            "items: expected a list, found a map"
        );
    }

    #[test]
    fn absent_and_null_fields_read_as_absent_through_any_depth() {
        let value = json!({"inner": null});
        let outer = Outer::deserialize(&value).unwrap();
        assert_eq!(
            outer.inner.field("inner", |i| &i.name).unwrap(),
            &Checked::Absent
        );
        assert_eq!(outer.count.int32("count").unwrap(), None);
    }

    #[test]
    fn int32_fields_refuse_numbers_the_api_cannot_store() {
        let value = json!({"count": 3_000_000_000u64});
        let outer = Outer::deserialize(&value).unwrap();
        assert_eq!(
            outer.count.int32("spec.count").unwrap_err().to_string(),
            "spec.count: expected an integer that fits in 32 bits, found 3000000000"
        );
    }
}
