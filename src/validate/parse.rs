//! From bytes to a validated `T`, and every way that can fail as a [`Rejection`].
//!
//! The error reports follow one shape, an `errors` array of `{ "field", "code", "message" }`
//! where `field` is a JSON Pointer into the input. Messages are fixed sentences chosen here:
//! serde's and validator's own messages quote the offending value, and error bodies never echo
//! what was sent.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use super::json::{ScanError, scan};
use super::pointer::{self, Pointer};
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};

/// At most this many entries go into one `errors` array: enough to fix a request, too few to
/// turn a report about 10 000 bad array items into a megabyte response.
const MAX_ERRORS: usize = 64;

/// One entry of the `errors` array.
struct FieldError {
    field: String,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    position: Option<(usize, usize)>,
}

impl FieldError {
    fn new(
        field: String,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field,
            code: code.into(),
            message: message.into(),
            position: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({ "field": self.field, "code": self.code, "message": self.message });
        if let Some((line, column)) = self.position {
            entry["line"] = json!(line);
            entry["column"] = json!(column);
        }
        entry
    }
}

/// A body or query that is not well-formed at all (not JSON, not UTF-8, too deep, a member
/// given twice): 400 with where.
fn unreadable(error: FieldError) -> Rejection {
    Rejection::new(RejectionKind::BadRequest)
        .with_reason(Reason::MalformedInput)
        .with_detail("The request could not be read; see `errors` for where.")
        .with_member("errors", Value::Array(vec![error.to_json()]))
}

/// Well-formed input that does not fit the type (a wrong type, a missing field, a value the type
/// does not accept, a member it does not have) is a question of content like a failed rule:
/// 422, listed with every member the type does not have that was read before it. Anything else
/// is [`unreadable`].
fn misfit(error: FieldError, unknown: Vec<String>) -> Rejection {
    if !matches!(
        &*error.code,
        "invalid_type" | "missing_field" | "invalid_value" | "unknown_field"
    ) {
        return unreadable(error);
    }
    // Room for the misfit itself, whatever sorts before it.
    let mut errors = unknown_fields(unknown);
    errors.truncate(MAX_ERRORS - 1);
    errors.push(error);
    unprocessable(errors)
}

fn unknown_fields(fields: Vec<String>) -> Vec<FieldError> {
    fields
        .into_iter()
        .map(|field| FieldError::new(field, "unknown_field", "is not a field of this resource"))
        .collect()
}

fn unprocessable(mut errors: Vec<FieldError>) -> Rejection {
    errors.sort_by(|a, b| (&a.field, &a.code).cmp(&(&b.field, &b.code)));
    errors.truncate(MAX_ERRORS);
    let reason = if errors.iter().all(|error| error.code == "unknown_field") {
        Reason::UnknownField
    } else {
        Reason::ValidationFailed
    };
    Rejection::new(RejectionKind::UnprocessableContent)
        .with_reason(reason)
        .with_detail("The request content is not valid; see `errors` for every problem.")
        .with_member(
            "errors",
            Value::Array(errors.iter().map(FieldError::to_json).collect()),
        )
}

/// Parses a JSON body strictly into `T` and validates it.
pub(crate) fn from_json<T: DeserializeOwned + Validate>(
    bytes: &[u8],
    max_depth: usize,
) -> Result<T, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let mut entry = FieldError::new(String::new(), "invalid_utf8", "is not valid UTF-8");
        let (line, column) = position(&bytes[..error.valid_up_to()]);
        entry.position = Some((line, column));
        unreadable(entry)
    })?;
    scan(text, max_depth).map_err(|error| {
        unreadable(match error {
            ScanError::TooDeep(field) => FieldError::new(
                field,
                "too_deep",
                format!("is nested deeper than {max_depth} levels"),
            ),
            ScanError::DuplicateKey(field) => {
                FieldError::new(field, "duplicate_key", "appears more than once")
            }
            ScanError::InvalidKey(field) => FieldError::new(
                field,
                "invalid_key",
                "has a member name that is not valid Unicode",
            ),
        })
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut unknown = Vec::new();
    let read: Result<T, _> = {
        let mut record = |path: serde_ignored::Path<'_>| {
            if unknown.len() < MAX_ERRORS {
                unknown.push(pointer::from_ignored_path(&path));
            }
        };
        let ignored = serde_ignored::Deserializer::new(&mut de, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    let value = read.map_err(|error| {
        let field = pointer::from_error_path(error.path());
        misfit(json_error(field, error.inner()), unknown.clone())
    })?;
    de.end()
        .map_err(|error| unreadable(json_error(String::new(), &error)))?;
    validated(value, unknown)
}

/// Parses `application/x-www-form-urlencoded` text (a query string or a form body) into `T` and
/// validates it. Each name may appear once.
pub(crate) fn from_urlencoded<T: DeserializeOwned + Validate>(
    input: &[u8],
) -> Result<T, Rejection> {
    let mut names: Vec<Cow<'_, str>> = Vec::new();
    for (name, value) in form_urlencoded::parse(input) {
        // form_urlencoded decodes invalid UTF-8 to U+FFFD without telling; refuse instead of
        // letting a silently altered value through.
        if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            let mut field = Pointer::default();
            field.key(&name);
            return Err(unreadable(FieldError::new(
                field.finish(),
                "invalid_utf8",
                "is not valid UTF-8",
            )));
        }
        names.push(name);
    }
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        let mut field = Pointer::default();
        field.key(&pair[0]);
        return Err(unreadable(FieldError::new(
            field.finish(),
            "duplicate_key",
            "appears more than once",
        )));
    }
    let mut unknown = Vec::new();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(input));
    let mut record = |path: serde_ignored::Path<'_>| {
        if unknown.len() < MAX_ERRORS {
            unknown.push(pointer::from_ignored_path(&path));
        }
    };
    let ignored = serde_ignored::Deserializer::new(de, &mut record);
    let read: Result<T, _> = serde_path_to_error::deserialize(ignored);
    let value = read.map_err(|error| {
        let field = pointer::from_error_path(error.path());
        misfit(
            data_error(field, &error.inner().to_string()),
            unknown.clone(),
        )
    })?;
    validated(value, unknown)
}

/// Runs the validator and reports unknown fields and failed rules together, every one at once.
pub(crate) fn validated<T: Validate>(value: T, unknown: Vec<String>) -> Result<T, Rejection> {
    let mut errors = unknown_fields(unknown);
    if let Err(failures) = value.validate() {
        collect(&failures, &mut String::new(), &mut errors);
    }
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(unprocessable(errors))
    }
}

/// Flattens validator's tree of errors into pointers.
fn collect(failures: &ValidationErrors, prefix: &mut String, out: &mut Vec<FieldError>) {
    for (name, kind) in failures.errors() {
        let base = prefix.len();
        if name != "__all__" {
            // validator's name for errors of the struct as a whole.
            let mut segment = Pointer::default();
            segment.key(name);
            prefix.push_str(&segment.finish());
        }
        match kind {
            ValidationErrorsKind::Field(errors) => {
                for error in errors {
                    if out.len() < MAX_ERRORS * 4 {
                        out.push(FieldError::new(
                            prefix.clone(),
                            error.code.clone(),
                            message(error),
                        ));
                    }
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, prefix, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    let base = prefix.len();
                    let mut segment = Pointer::default();
                    segment.index(*index);
                    prefix.push_str(&segment.finish());
                    collect(inner, prefix, out);
                    prefix.truncate(base);
                }
            }
        }
        prefix.truncate(base);
    }
}

/// The message of a failed rule: the one set in the rule (`message = "..."`), or one made here
/// from the rule's limits. Never from the `value` parameter validator adds to every error.
fn message(error: &ValidationError) -> Cow<'static, str> {
    if let Some(message) = &error.message {
        return message.clone();
    }
    let param = |name: &str| error.params.get(name).map(Value::to_string);
    let bounds = |what: &str| -> Cow<'static, str> {
        match (param("min"), param("max"), param("equal")) {
            (_, _, Some(equal)) => format!("{what} must be exactly {equal}").into(),
            (Some(min), Some(max), _) => format!("{what} must be between {min} and {max}").into(),
            (Some(min), None, _) => format!("{what} must be at least {min}").into(),
            (None, Some(max), _) => format!("{what} must be at most {max}").into(),
            (None, None, _) => match (param("exclusive_min"), param("exclusive_max")) {
                (Some(min), Some(max)) => {
                    format!("{what} must be greater than {min} and less than {max}").into()
                }
                (Some(min), None) => format!("{what} must be greater than {min}").into(),
                (None, Some(max)) => format!("{what} must be less than {max}").into(),
                (None, None) => "is out of range".into(),
            },
        }
    };
    match &*error.code {
        "length" => bounds("length"),
        "range" => bounds("value"),
        "email" => "must be an e-mail address".into(),
        "url" => "must be a URL".into(),
        "regex" => "does not have the required format".into(),
        "required" => "is required".into(),
        "must_match" => "does not match the other field".into(),
        "contains" => "does not contain the required text".into(),
        "does_not_contain" => "contains text that is not allowed".into(),
        "non_control_character" => "must not contain control characters".into(),
        "ip" | "ipv4" | "ipv6" => "must be an IP address".into(),
        "credit_card" => "must be a card number".into(),
        _ => "is not valid".into(),
    }
}

/// A serde_json error: syntax errors carry their line and column, data errors their location.
fn json_error(field: String, error: &serde_json::Error) -> FieldError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Data => data_error(field, &error.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            let message = if error.to_string().starts_with("number out of range") {
                "has a number too large to represent"
            } else if error.is_eof() {
                "ends before the JSON text is complete"
            } else {
                "is not valid JSON"
            };
            let mut entry = FieldError::new(field, "syntax", message);
            entry.position = Some((error.line(), error.column()));
            entry
        }
    }
}

/// A data error (the input is well-formed but does not fit the type), classified by serde's own
/// standard messages; their wording is stable since serde 1.0 and a unit test pins it. Any other
/// message (a custom `Deserialize` impl's, which may quote the input) becomes `invalid_value`.
fn data_error(mut field: String, message: &str) -> FieldError {
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = named("missing field `") {
        let mut pointer = Pointer::default();
        pointer.push_str(&field);
        pointer.key(&name);
        return FieldError::new(pointer.finish(), "missing_field", "is required");
    }
    if let Some(name) = named("duplicate field `") {
        // serde_path_to_error points at the object; name the member.
        if !field.ends_with(&format!("/{name}")) {
            field.push('/');
            field.push_str(&name);
        }
        return FieldError::new(field, "duplicate_key", "appears more than once");
    }
    if message.starts_with("unknown field `") {
        // serde_path_to_error already includes the unknown name in the path.
        return FieldError::new(field, "unknown_field", "is not a field of this resource");
    }
    if message.starts_with("invalid type") {
        return FieldError::new(field, "invalid_type", "has the wrong type");
    }
    FieldError::new(field, "invalid_value", "is not an accepted value")
}

/// Line and column (1-based) just after `bytes`, as serde_json counts them.
fn position(bytes: &[u8]) -> (usize, usize) {
    let line = 1 + bytes.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + bytes.iter().rev().take_while(|&&b| b != b'\n').count();
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde::de::Error as _;

    #[test]
    fn serde_standard_messages_are_classified() {
        #[derive(Debug)]
        struct E(String);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for E {}
        impl serde::de::Error for E {
            fn custom<T: std::fmt::Display>(msg: T) -> Self {
                Self(msg.to_string())
            }
        }
        let cases = [
            (E::missing_field("sku"), "/sku", "missing_field"),
            (E::duplicate_field("sku"), "/sku", "duplicate_key"),
            (E::unknown_field("x", &["sku"]), "", "unknown_field"),
            (
                E::invalid_type(serde::de::Unexpected::Str("secret"), &"u32"),
                "",
                "invalid_type",
            ),
            (
                E::invalid_value(serde::de::Unexpected::Str("secret"), &"u32"),
                "",
                "invalid_value",
            ),
            (E::custom("secret"), "", "invalid_value"),
        ];
        for (error, field, code) in cases {
            let entry = data_error(String::new(), &error.0);
            assert_eq!((entry.field.as_str(), &*entry.code), (field, code));
            assert!(!entry.message.contains("secret"));
        }
    }

    #[derive(Debug, Deserialize, Validate)]
    struct Item {
        #[validate(length(min = 1, max = 3))]
        name: String,
        #[serde(default)]
        #[validate(nested)]
        parts: Vec<Part>,
    }

    #[derive(Debug, Deserialize, Validate)]
    struct Part {
        #[validate(range(max = 5))]
        n: u32,
    }

    fn errors(rejection: &Rejection) -> Vec<(String, String)> {
        rejection.members().unwrap()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn reports_every_failure_with_pointers_and_no_values() {
        let body = br#"{"name":"toolong","parts":[{"n":1},{"n":9,"x":"secret"}],"y":1}"#;
        let rejection = from_json::<Item>(body, 32).unwrap_err();
        assert_eq!(rejection.status(), 422);
        assert_eq!(
            errors(&rejection),
            [
                ("/name".to_owned(), "length".to_owned()),
                ("/parts/1/n".to_owned(), "range".to_owned()),
                ("/parts/1/x".to_owned(), "unknown_field".to_owned()),
                ("/y".to_owned(), "unknown_field".to_owned()),
            ]
        );
        let text = String::from_utf8(rejection.problem_json().to_vec()).unwrap();
        assert!(
            !text.contains("toolong") && !text.contains("secret"),
            "{text}"
        );
    }

    #[test]
    fn input_that_does_not_fit_the_type_is_422_with_the_unknown_fields_read_before_it() {
        type Case = (&'static [u8], &'static [(&'static str, &'static str)]);
        let cases: [Case; 3] = [
            (br#"{"name":1}"#, &[("/name", "invalid_type")]),
            (br#"{"parts":[]}"#, &[("/name", "missing_field")]),
            // The unknown member is reported next to the missing one, in one list.
            (
                br#"{"admin":true,"parts":[{"n":1,"x":0}]}"#,
                &[
                    ("/admin", "unknown_field"),
                    ("/name", "missing_field"),
                    ("/parts/0/x", "unknown_field"),
                ],
            ),
        ];
        for (body, expected) in cases {
            let rejection = from_json::<Item>(body, 32).unwrap_err();
            assert_eq!(rejection.status(), 422, "{body:?}");
            assert_eq!(rejection.reason(), Reason::ValidationFailed);
            assert_eq!(errors(&rejection), pairs(expected), "{body:?}");
        }
        // However many unknown members sort before it, the misfit itself is listed.
        let mut crowded: String = (0..100).map(|i| format!("\"a{i:03}\":0,")).collect();
        crowded.insert(0, '{');
        crowded.push_str("\"parts\":[]}");
        let rejection = from_json::<Item>(crowded.as_bytes(), 32).unwrap_err();
        let listed = errors(&rejection);
        assert_eq!(listed.len(), MAX_ERRORS);
        assert!(listed.contains(&("/name".to_owned(), "missing_field".to_owned())));
        assert_eq!(rejection.reason(), Reason::ValidationFailed);
        // Only members the type does not have: its own reason.
        let rejection = from_json::<Item>(br#"{"name":"ab","admin":1}"#, 32).unwrap_err();
        assert_eq!(rejection.reason(), Reason::UnknownField);
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(field, code)| ((*field).to_owned(), (*code).to_owned()))
            .collect()
    }

    #[test]
    fn malformed_input_is_400_with_location() {
        let cases: [(&[u8], &str, &str); 4] = [
            (br#"{"name":"a","name":"b"}"#, "/name", "duplicate_key"),
            (b"{\"name\":\"a\xff\"}", "", "invalid_utf8"),
            (br#"{"name":"a"} x"#, "", "syntax"),
            (
                br#"{"name":"a","parts":[{"n":1e400}]}"#,
                "/parts/0/n",
                "syntax",
            ),
        ];
        for (body, field, code) in cases {
            let rejection = from_json::<Item>(body, 32).unwrap_err();
            assert_eq!(rejection.status(), 400, "{body:?}");
            assert_eq!(errors(&rejection), [(field.to_owned(), code.to_owned())]);
        }
    }

    #[test]
    fn urlencoded_input_gets_the_same_treatment() {
        assert_eq!(from_urlencoded::<Item>(b"name=ab").unwrap().name, "ab");
        for (input, status, code) in [
            (&b"name=a&name=b"[..], 400, "duplicate_key"),
            (b"name=%FF", 400, "invalid_utf8"),
            (b"name=abcd", 422, "length"),
            (b"name=a&admin=1", 422, "unknown_field"),
            (b"", 422, "missing_field"),
        ] {
            let rejection = from_urlencoded::<Item>(input).unwrap_err();
            assert_eq!(rejection.status(), status, "{input:?}");
            assert_eq!(errors(&rejection)[0].1, code, "{input:?}");
        }
    }
}
