//! Server-side apply, simplified: each field manager owns the set of leaf fields it applied
//! (recorded in `metadata.managedFields` as FieldsV1). Applying a field another Apply manager
//! owns with a different value is a 409 naming that manager (server-side-apply.json); `force`
//! takes ownership. Knowing divergences: lists are atomic leaves (upstream merges associative
//! lists by key), and fields written by Update operations are not tracked, so they never
//! conflict.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::api_error::ApiError;

type Path = Vec<String>;

fn collect(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The leaf fields of an applied configuration, minus identity fields.
fn fields_of(applied: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    collect(applied, &mut Vec::new(), &mut out);
    out.retain(|p| {
        let s: Vec<&str> = p.iter().map(String::as_str).collect();
        !matches!(
            s.as_slice(),
            ["apiVersion"]
                | ["kind"]
                | ["metadata", "name"]
                | ["metadata", "namespace"]
                | ["metadata", "resourceVersion"]
                | ["metadata", "uid"]
                | ["metadata", "creationTimestamp"]
                | ["metadata", "managedFields", ..]
                | ["status", ..]
        )
    });
    out
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            cur = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() || m.keys().any(|k| !k.starts_with("f:") && k != ".") {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        if children.is_empty() {
            return;
        }
    }
    for (k, child) in children {
        prefix.push(k[2..].to_string());
        from_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

fn get<'a>(v: &'a Value, p: &Path) -> Option<&'a Value> {
    let mut cur = v;
    for seg in p {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn remove(v: &mut Value, p: &Path) {
    let Some((last, parent)) = p.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parent {
        match cur.as_object_mut().and_then(|m| m.get_mut(seg)) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn deep_merge(target: &mut Value, src: &Value) {
    match (target.as_object_mut(), src.as_object()) {
        (Some(t), Some(s)) => {
            for (k, v) in s {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && v.is_object() => deep_merge(tv, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = src.clone(),
    }
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn render(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

/// Apply `applied` as `manager` onto `live` (None: the object does not exist yet).
/// Returns the new object, with managedFields updated; the caller stores it.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, ApiError> {
    let mine = fields_of(applied);
    let mut entries: Vec<(String, String, BTreeSet<Path>, Value)> = Vec::new();
    if let Some(mf) = live.and_then(|l| l["metadata"]["managedFields"].as_array()) {
        for e in mf {
            let mut set = BTreeSet::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut set);
            entries.push((
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
                set,
                e.clone(),
            ));
        }
    }
    let empty = json!({});
    let live_v = live.unwrap_or(&empty);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for (m, op, set, _) in &entries {
        if m == manager || op != "Apply" {
            continue;
        }
        for p in set {
            for q in &mine {
                if overlaps(p, q) && get(live_v, q) != get(applied, q) {
                    conflicts.push((m.clone(), q.clone()));
                }
            }
        }
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let message = if n == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\": {}",
                conflicts[0].0,
                render(&conflicts[0].1)
            )
        } else {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", render(p)))
                .collect();
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": render(p)}))
            .collect();
        let mut e = ApiError::new(409, "Conflict", message);
        e.details = Some(json!({"causes": causes}));
        return Err(e);
    }
    let previously_mine: BTreeSet<Path> = entries
        .iter()
        .filter(|(m, op, _, _)| m == manager && op == "Apply")
        .flat_map(|(_, _, s, _)| s.iter().cloned())
        .collect();
    // Forced: the other managers lose the fields now applied.
    for (m, _, set, _) in entries.iter_mut() {
        if m != manager {
            set.retain(|p| !mine.iter().any(|q| overlaps(p, q)));
        }
    }
    let mut out = live_v.clone();
    let mut body = applied.clone();
    if let Some(o) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        o.remove("managedFields");
        o.remove("resourceVersion");
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    deep_merge(&mut out, &body);
    for p in previously_mine.difference(&mine) {
        let owned_by_other = entries
            .iter()
            .any(|(m, _, s, _)| m != manager && s.iter().any(|q| overlaps(p, q)));
        if !owned_by_other {
            remove(&mut out, p);
        }
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut managed: Vec<Value> = Vec::new();
    for (m, op, set, orig) in &entries {
        if m == manager && op == "Apply" {
            continue;
        }
        if op == "Apply" {
            if set.is_empty() {
                continue;
            }
            let mut e = orig.clone();
            e["fieldsV1"] = to_fields_v1(set);
            managed.push(e);
        } else {
            managed.push(orig.clone());
        }
    }
    managed.insert(
        0,
        json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now,
               "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&mine)}),
    );
    out["metadata"]["managedFields"] = Value::Array(managed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_then_force() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "one"}});
        let live = apply(None, &a, "manager-a", false, "v1").unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "two"}});
        let e = apply(Some(&live), &b, "manager-b", false, "v1").unwrap_err();
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"manager-a\": .data.k"
        );
        let out = apply(Some(&live), &b, "manager-b", true, "v1").unwrap();
        assert_eq!(out["data"]["k"], "two");
        let mf = out["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(mf[0]["manager"], "manager-b");
    }
}
