//! SOAP 1.1 and 1.2 for REST clients: the envelope a request is sent in,
//! and what a service's answer means — the element inside `Body` as JSON
//! (XML → JSON rules of [`super::xml`]), or a `Fault` with its code,
//! message and detail.

use serde_json::Value;

use super::xml::{self, XmlError, XmlRules};
use meridian_core::config::SoapVersion;

const ENV_11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const ENV_12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The envelope around `body` (the `Body`'s content, already XML).
pub fn envelope(version: SoapVersion, body: &str) -> String {
    let ns = match version {
        SoapVersion::V11 => ENV_11,
        SoapVersion::V12 => ENV_12,
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{ns}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// The media type of a request, with the 1.2 `action` parameter.
pub fn content_type(version: SoapVersion, action: Option<&str>) -> String {
    match (version, action) {
        (SoapVersion::V11, _) => "text/xml; charset=utf-8".into(),
        (SoapVersion::V12, None) => "application/soap+xml; charset=utf-8".into(),
        (SoapVersion::V12, Some(a)) => format!("application/soap+xml; charset=utf-8; action=\"{a}\""),
    }
}

/// What a SOAP answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The element inside `Body`, as `{ "<name>": value }` (`{}` when empty).
    Answer(Value),
    Fault(Fault),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The caller's fault (`Client` in 1.1, `Sender` in 1.2).
    pub client: bool,
    /// The code without its namespace prefix (`Client.Auth`, `Receiver`).
    pub code: String,
    pub message: String,
    pub detail: Option<Value>,
}

/// Why an answer is not a SOAP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SoapError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("not a SOAP envelope")]
    NotEnvelope,
}

/// `rules.always_array` paths must already start at `Envelope.Body.`.
pub fn read_answer(xml_bytes: &[u8], rules: &XmlRules) -> Result<Outcome, SoapError> {
    let doc = xml::to_json(xml_bytes, rules)?;
    let body = doc.get("Envelope").and_then(|e| e.get("Body")).ok_or(SoapError::NotEnvelope)?;
    let Some(fault) = body.get("Fault") else {
        return Ok(Outcome::Answer(match body {
            Value::Object(m) => Value::Object(m.clone()),
            _ => Value::Object(Default::default()),
        }));
    };
    let text = |v: Option<&Value>| -> String {
        match v {
            // Several `Text`s (languages): the first.
            Some(Value::Array(a)) => a.first().map(text_of).unwrap_or_default(),
            Some(v) => text_of(v),
            None => String::new(),
        }
    };
    let unprefixed = |s: String| s.rsplit(':').next().unwrap_or("").to_string();
    let (code, message, detail) = if let Some(code) = fault.get("faultcode") {
        (unprefixed(text(Some(code))), text(fault.get("faultstring")), fault.get("detail"))
    } else {
        let code = fault.get("Code").and_then(|c| c.get("Value"));
        let reason = fault.get("Reason").and_then(|r| r.get("Text"));
        (unprefixed(text(code)), text(reason), fault.get("Detail"))
    };
    let client = code.starts_with("Client") || code.starts_with("Sender");
    Ok(Outcome::Fault(Fault { client, code, message, detail: detail.filter(|d| !d.is_null()).cloned() }))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o.get("#text").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_the_element_inside_body() {
        let env = format!(
            "<s:Envelope xmlns:s=\"{ENV_11}\"><s:Header><t>1</t></s:Header><s:Body><r:GetBalanceResponse xmlns:r=\"urn:b\"><balance>5</balance></r:GetBalanceResponse></s:Body></s:Envelope>"
        );
        let out = read_answer(env.as_bytes(), &XmlRules::default()).unwrap();
        assert_eq!(out, Outcome::Answer(json!({ "GetBalanceResponse": { "balance": "5" } })));
    }

    #[test]
    fn faults_of_both_versions_say_whose_fault_it_is() {
        let f11 = format!(
            "<s:Envelope xmlns:s=\"{ENV_11}\"><s:Body><s:Fault><faultcode>s:Client.Auth</faultcode><faultstring>bad account</faultstring><detail><e>42</e></detail></s:Fault></s:Body></s:Envelope>"
        );
        let Outcome::Fault(f) = read_answer(f11.as_bytes(), &XmlRules::default()).unwrap() else { panic!() };
        assert_eq!((f.client, f.code.as_str(), f.message.as_str()), (true, "Client.Auth", "bad account"));
        assert_eq!(f.detail, Some(json!({ "e": "42" })));
        let f12 = format!(
            "<e:Envelope xmlns:e=\"{ENV_12}\"><e:Body><e:Fault><e:Code><e:Value>e:Receiver</e:Value></e:Code><e:Reason><e:Text xml:lang=\"en\">down</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>"
        );
        let Outcome::Fault(f) = read_answer(f12.as_bytes(), &XmlRules::default()).unwrap() else { panic!() };
        assert_eq!((f.client, f.code.as_str(), f.message.as_str(), f.detail), (false, "Receiver", "down", None));
    }

    #[test]
    fn other_documents_are_not_answers() {
        assert_eq!(read_answer(b"<html/>", &XmlRules::default()), Err(SoapError::NotEnvelope));
        assert!(matches!(read_answer(b"<!DOCTYPE x><x/>", &XmlRules::default()), Err(SoapError::Xml(_))));
    }
}
