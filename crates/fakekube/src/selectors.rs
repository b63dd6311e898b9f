//! Label and field selectors, parsed the way k8s.io/apimachinery/pkg/labels and /fields do,
//! with the same error wording (the transcripts show `unable to parse requirement: found '',
//! expected: ',' or ')'` and `"data.k" is not a known field selector: ...`).

use serde_json::Value;

use crate::api_error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
/// The operator of one label requirement.
pub enum Op {
    /// `key=value` or `key==value`.
    Equals,
    /// `key!=value` (also true when the label is absent).
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)` (also true when the label is absent).
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>n` (integers).
    Gt,
    /// `key<n` (integers).
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One requirement of a label selector.
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label's value is compared.
    pub op: Op,
    /// The values compared with (empty for `Exists`/`DoesNotExist`).
    pub values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Every one must hold (AND).
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    DoesNotExist, // !
    Equals,       // =
    DoubleEquals, // ==
    NotEquals,    // !=
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn lit(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::DoesNotExist => "!".into(),
            Tok::Equals => "=".into(),
            Tok::DoubleEquals => "==".into(),
            Tok::NotEquals => "!=".into(),
            Tok::Gt => ">".into(),
            Tok::Lt => "<".into(),
            Tok::Open => "(".into(),
            Tok::Close => ")".into(),
            Tok::Comma => ",".into(),
            Tok::End => String::new(),
        }
    }
}

fn lex(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEquals);
                    i += 2
                } else {
                    out.push(Tok::DoesNotExist);
                    i += 1
                }
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEquals);
                    i += 2
                } else {
                    out.push(Tok::Equals);
                    i += 1
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r(),<>!=".contains(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    out.push(Tok::End);
    out
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut op = None;
        if *self.peek() == Tok::DoesNotExist {
            self.next();
            op = Some(Op::DoesNotExist);
        }
        let key = match self.next() {
            Tok::Ident(k) => k,
            t => return Err(format!("found '{}', expected: identifier", t.lit())),
        };
        if let Err(e) = crate::names::label_key_error(&key) {
            return Err(format!("key: Invalid value: \"{key}\": {e}"));
        }
        if op.is_some() {
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: vec![],
            });
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            return Ok(Requirement {
                key,
                op: Op::Exists,
                values: vec![],
            });
        }
        let op = match self.next() {
            Tok::Equals | Tok::DoubleEquals => Op::Equals,
            Tok::NotEquals => Op::NotEquals,
            Tok::Gt => Op::Gt,
            Tok::Lt => Op::Lt,
            Tok::Ident(s) if s == "in" => Op::In,
            Tok::Ident(s) if s == "notin" => Op::NotIn,
            t => {
                return Err(format!(
                    "found '{}', expected: {}",
                    t.lit(),
                    "=, !=, ==, in, notin, gt, lt"
                ))
            }
        };
        let values = match op {
            Op::In | Op::NotIn => {
                match self.next() {
                    Tok::Open => {}
                    t => return Err(format!("found '{}', expected: '('", t.lit())),
                }
                let mut vals = Vec::new();
                loop {
                    match self.next() {
                        Tok::Ident(v) => {
                            vals.push(v);
                            match self.next() {
                                Tok::Comma => continue,
                                Tok::Close => break,
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        t.lit()
                                    ))
                                }
                            }
                        }
                        Tok::Close => break,
                        Tok::Comma => {
                            // an empty value: `in (a,,b)` is accepted upstream
                            vals.push(String::new());
                        }
                        t => return Err(format!("found '{}', expected: ',' or ')'", t.lit())),
                    }
                }
                vals
            }
            _ => match self.peek().clone() {
                Tok::End | Tok::Comma => vec![String::new()],
                Tok::Ident(v) => {
                    self.next();
                    vec![v]
                }
                t => return Err(format!("found '{}', expected: identifier", t.lit())),
            },
        };
        for v in &values {
            if let Err(e) = crate::names::label_value_error(v) {
                return Err(format!("values[0][{key}]: Invalid value: \"{v}\": {e}"));
            }
        }
        if matches!(op, Op::Gt | Op::Lt) && values[0].parse::<i64>().is_err() {
            return Err(format!(
                "values[0][{key}]: Invalid value: \"{}\": for 'Gt', 'Lt' operators, the value must be an integer",
                values[0]
            ));
        }
        Ok(Requirement { key, op, values })
    }
}

impl LabelSelector {
    /// Parse `?labelSelector=`; errors are 400 BadRequest with upstream's message.
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = Vec::new();
        loop {
            match p.peek().clone() {
                Tok::End => break,
                Tok::Ident(_) | Tok::DoesNotExist => {
                    let r = p.requirement().map_err(|e| {
                        ApiError::bad_request(format!("unable to parse requirement: {e}"))
                    })?;
                    requirements.push(r);
                    match p.next() {
                        Tok::End => break,
                        Tok::Comma => match p.peek() {
                            Tok::Ident(_) | Tok::DoesNotExist => {}
                            t => {
                                return Err(ApiError::bad_request(format!(
                                    "found '{}', expected: identifier or '!'",
                                    t.lit()
                                )))
                            }
                        },
                        t => {
                            return Err(ApiError::bad_request(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.lit()
                            )))
                        }
                    }
                }
                t => {
                    return Err(ApiError::bad_request(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.lit()
                    )))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// From a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`).
    pub fn from_object(sel: &Value) -> LabelSelector {
        let mut requirements = Vec::new();
        if let Some(m) = sel["matchLabels"].as_object() {
            for (k, v) in m {
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    values: vec![v.as_str().unwrap_or("").to_string()],
                });
            }
        }
        if let Some(exprs) = sel["matchExpressions"].as_array() {
            for e in exprs {
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e["operator"].as_str().unwrap_or("") {
                    "In" => Op::In,
                    "NotIn" => Op::NotIn,
                    "Exists" => Op::Exists,
                    _ => Op::DoesNotExist,
                };
                requirements.push(Requirement {
                    key: e["key"].as_str().unwrap_or("").to_string(),
                    op,
                    values,
                });
            }
        }
        LabelSelector { requirements }
    }

    /// True for the empty selector, which matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = obj["metadata"]["labels"].as_object();
        self.matches(|k| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str()))
    }

    /// Whether labels read through `get` (key to value) satisfy every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| {
            let v = get(&r.key);
            match r.op {
                Op::Equals => v == Some(r.values[0].as_str()),
                Op::NotEquals => v != Some(r.values[0].as_str()),
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => v.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt | Op::Lt => {
                    let (Some(v), Ok(want)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        r.values[0].parse::<i64>(),
                    ) else {
                        return false;
                    };
                    if r.op == Op::Gt {
                        v > want
                    } else {
                        v < want
                    }
                }
            }
        })
    }
}

impl std::fmt::Display for LabelSelector {
    /// The string form upstream renders (`app=x,tier in (a,b)`), as in Scale's `status.selector`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values[0]),
                Op::NotEquals => format!("{}!={}", r.key, r.values[0]),
                Op::In => format!("{} in ({})", r.key, sorted(&r.values).join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, sorted(&r.values).join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::Gt => format!("{}>{}", r.key, r.values[0]),
                Op::Lt => format!("{}<{}", r.key, r.values[0]),
            })
            .collect();
        parts.sort();
        write!(f, "{}", parts.join(","))
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// A parsed field selector: `key=value`, `key==value`, `key!=value`, comma separated.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector {
    pub terms: Vec<(String, bool, String)>, // (field, equal, value)
}

/// The fields a type can be selected on: metadata.name and metadata.namespace everywhere,
/// plus the extra ones upstream registers for pods and events (kubectl describe uses the latter).
pub(crate) fn supported_fields(plural: &str) -> Vec<&'static str> {
    let mut f = vec!["metadata.name", "metadata.namespace"];
    match plural {
        "pods" => f.extend([
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]),
        "events" => f.extend([
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]),
        "namespaces" => f.push("status.phase"),
        "secrets" => f.push("type"),
        "replicasets" | "statefulsets" | "deployments" => f.push("status.replicas"),
        "jobs" => f.push("status.successful"),
        _ => {}
    }
    f
}

impl FieldSelector {
    pub(crate) fn parse(s: &str, plural: &str) -> Result<FieldSelector, ApiError> {
        let mut terms = Vec::new();
        let supported = supported_fields(plural);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            if !supported.contains(&k) {
                let list = supported
                    .iter()
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ApiError::bad_request(format!(
                    "\"{k}\" is not a known field selector: only {list}"
                )));
            }
            terms.push((k.to_string(), eq, v.to_string()));
        }
        Ok(FieldSelector { terms })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub(crate) fn matches_object(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(k, eq, want)| {
            let mut cur = obj;
            for seg in k.split('.') {
                cur = &cur[seg];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Object(o) if k == "source" => o
                    .get("component")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_set_based() {
        let s = LabelSelector::parse("page=yes,n notin (0,1),!app,x").unwrap();
        assert_eq!(s.requirements.len(), 4);
        let o = json!({"metadata": {"labels": {"page": "yes", "n": "2", "x": ""}}});
        assert!(s.matches_object(&o));
    }

    #[test]
    fn errors_like_upstream() {
        let e = LabelSelector::parse("a in (b").unwrap_err();
        assert_eq!(
            e.message,
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        let e = FieldSelector::parse("data.k=v", "configmaps").unwrap_err();
        assert_eq!(
            e.message,
            "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }
}
