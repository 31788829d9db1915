//! Reading a JSON request body field by field, so that every mistake is a
//! 400 that names the field.

use serde_json::{Map, Value};

use ops_base::error::{Error, Result};

pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Parses `body` as a JSON object whose keys are all in `allowed`. An
    /// empty body is an empty object.
    pub fn parse(body: &[u8], allowed: &[&str]) -> Result<Fields> {
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|e| Error::BadRequest {
                code: "invalid_json",
                message: format!("the request body is not valid JSON: {e}"),
            })?
        };
        let Value::Object(map) = value else {
            return Err(Error::BadRequest {
                code: "invalid_json",
                message: "the request body must be a JSON object".into(),
            });
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Error::BadRequest {
                code: "unknown_field",
                message: format!(
                    "unknown field `{unknown}`; accepted fields: {}",
                    allowed.join(", ")
                ),
            });
        }
        Ok(Fields { map })
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// A string, if present; `null` is refused.
    pub fn str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    pub fn required_str(&self, key: &str) -> Result<String> {
        self.str(key)?
            .ok_or_else(|| Error::invalid_field(key, "is required"))
    }

    /// A string that must not be blank, at most `max` characters.
    pub fn text(&self, key: &str, max: usize) -> Result<Option<String>> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Err(Error::invalid_field(key, "must not be empty")),
            Some(s) if s.chars().count() > max => Err(Error::invalid_field(
                key,
                format!("is longer than {max} characters"),
            )),
            Some(s) => Ok(Some(s)),
        }
    }

    /// Absent: `None`; `null` or `""`: `Some(None)`; a string: `Some(Some)`.
    pub fn nullable_str(&self, key: &str) -> Result<Option<Option<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(other) => Err(wrong_type(key, "a string or null", other)),
        }
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| Error::invalid_field(key, "must be a whole number")),
            Some(other) => Err(wrong_type(key, "a whole number", other)),
        }
    }

    /// A whole number, or `null` (as absent): for values a caller may not
    /// know, such as an exit code.
    pub fn nullable_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            Some(Value::Null) => Ok(None),
            _ => self.i64(key),
        }
    }

    /// A list of whole numbers (ids); `null` is absent.
    pub fn i64_list(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| wrong_type(key, "a list of whole numbers", v))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "a list of whole numbers", other)),
        }
    }

    /// A whole number within `range`.
    pub fn i64_in(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>> {
        match self.i64(key)? {
            Some(n) if !range.contains(&n) => Err(Error::invalid_field(
                key,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            )),
            v => Ok(v),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "true or false", other)),
        }
    }

    /// A list of strings.
    pub fn str_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(wrong_type(key, "a list of strings", other)),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "a list of strings", other)),
        }
    }

    /// Any JSON value, as sent.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> Error {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    Error::invalid_field(key, format!("must be {expected}, got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field() {
        let f = Fields::parse(br#"{"title": 5}"#, &["title"]).unwrap();
        let e = f.str("title").unwrap_err().to_string();
        assert!(e.contains("`title`") && e.contains("a string"), "{e}");
        let e = Fields::parse(br#"{"nope": 1}"#, &["title"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`nope`"), "{e}");
        assert!(Fields::parse(b"{", &[]).is_err());
        assert!(Fields::parse(b"[1]", &[]).is_err());
        assert!(Fields::parse(b"  ", &[]).is_ok());
    }
}
