//! Merging the JSON objects of several backends into one answer, the same
//! whatever order they arrive in: backends merge in the order the route
//! lists them; where two give the same key, objects merge key by key and
//! any other value stays the one of the backend listed first.

use serde_json::{Map, Value};

/// Keep only the fields at `allow` (all when empty), then drop those at `deny`.
pub fn filter(value: Value, allow: &[Vec<String>], deny: &[Vec<String>]) -> Value {
    let mut value = if allow.is_empty() {
        value
    } else {
        let mut kept = Value::Object(Map::new());
        for path in allow {
            if let Some(v) = get(&value, path) {
                put(&mut kept, path, v.clone());
            }
        }
        kept
    };
    for path in deny {
        remove(&mut value, path);
    }
    value
}

fn get<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn put(into: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut at = into;
    for k in parents {
        let Value::Object(m) = at else { return };
        at = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = at {
        m.insert(last.clone(), v);
    }
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut at = v;
    for k in parents {
        match at.get_mut(k) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Value::Object(m) = at {
        m.remove(last);
    }
}

/// Merge `later` into `into`; `into`'s values win. The keys both had.
pub fn merge(into: &mut Map<String, Value>, later: Map<String, Value>) -> usize {
    let mut collisions = 0;
    for (k, v) in later {
        match (into.get_mut(&k), v) {
            (None, v) => {
                into.insert(k, v);
            }
            (Some(Value::Object(a)), Value::Object(b)) => collisions += merge(a, b),
            (Some(_), _) => collisions += 1,
        }
    }
    collisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<Vec<String>> {
        p.iter().map(|p| p.split('.').map(str::to_string).collect()).collect()
    }

    #[test]
    fn allow_keeps_and_deny_drops_by_dot_path() {
        let v = json!({ "user": { "name": "a", "secret": 1, "team": { "id": 2, "cost": 3 } }, "debug": true });
        let out = filter(v, &paths(&["user.name", "user.team", "nope.x"]), &paths(&["user.team.cost"]));
        assert_eq!(out, json!({ "user": { "name": "a", "team": { "id": 2 } } }));
    }

    #[test]
    fn the_first_listed_wins_and_objects_merge() {
        let mut a = json!({ "id": 1, "profile": { "name": "a" } }).as_object().cloned().unwrap();
        let b = json!({ "id": 2, "profile": { "name": "b", "age": 3 }, "extra": [1] }).as_object().cloned().unwrap();
        assert_eq!(merge(&mut a, b), 2);
        assert_eq!(Value::Object(a), json!({ "id": 1, "profile": { "name": "a", "age": 3 }, "extra": [1] }));
    }
}
