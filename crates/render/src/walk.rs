//! Generic walks over manifests: pod templates, pod specs, containers and field paths.

use serde_json::{Map, Value};

/// Calls `f` on every pod template anywhere in `value`: an object whose `spec` holds a
/// `containers` list (a Job's `spec.template`, each PyTorchJob replica's `template`, …).
pub(crate) fn for_each_pod_template(
    value: &mut Value,
    f: &mut impl FnMut(&mut Map<String, Value>),
) {
    match value {
        Value::Object(map) => {
            let is_template = map
                .get("spec")
                .and_then(|spec| spec.get("containers"))
                .is_some_and(Value::is_array);
            if is_template {
                f(map);
            }
            for item in map.values_mut() {
                for_each_pod_template(item, f);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| for_each_pod_template(item, f)),
        _ => {}
    }
}

/// Calls `f` on every pod spec anywhere in `value`: an object holding a `containers` list.
pub(crate) fn for_each_pod_spec(value: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            if map.get("containers").is_some_and(Value::is_array) {
                f(map);
            }
            for item in map.values_mut() {
                for_each_pod_spec(item, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| for_each_pod_spec(item, f)),
        _ => {}
    }
}

/// Calls `f` with every object in `value` (itself included) and a function formatting its
/// path, so paths are only built for the objects `f` reports.
pub(crate) fn visit_objects(
    value: &Value,
    path: &str,
    f: &mut impl FnMut(&Value, &dyn Fn() -> String),
) {
    let mut trail = Vec::new();
    visit(value, path, &mut trail, f);
}

/// One step from a walk's root to a node: walks keep a trail of these and format a path
/// ([`format_path`]) only when one is read.
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `root` then the trail, as [`join`] and `[i]` build it.
pub(crate) fn format_path(root: &str, trail: &[Step<'_>]) -> String {
    let mut path = root.to_owned();
    for step in trail {
        match step {
            Step::Key(key) => push_key(&mut path, key),
            Step::Index(i) => push_index(&mut path, *i),
        }
    }
    path
}

fn visit<'a>(
    value: &'a Value,
    root: &str,
    trail: &mut Vec<Step<'a>>,
    f: &mut impl FnMut(&Value, &dyn Fn() -> String),
) {
    match value {
        Value::Object(map) => {
            f(value, &|| format_path(root, trail));
            for (key, item) in map {
                if item.is_object() || item.is_array() {
                    trail.push(Step::Key(key));
                    visit(item, root, trail, f);
                    trail.pop();
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.is_object() || item.is_array() {
                    trail.push(Step::Index(i));
                    visit(item, root, trail, f);
                    trail.pop();
                }
            }
        }
        _ => {}
    }
}

/// The `containers` of a pod spec as objects (non-object entries are skipped).
pub(crate) fn containers_mut(
    pod_spec: &mut Map<String, Value>,
) -> impl Iterator<Item = &mut Map<String, Value>> {
    pod_spec
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The object at `key` in `map`, created empty when absent. `None` if it exists but is not
/// an object (the caller reports that as a field error).
pub(crate) fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    entry_or(map, key, || Value::Object(Map::new())).as_object_mut()
}

/// The value at `key` in `map`, inserted from `default` when absent. Unlike
/// `map.entry(key.to_owned())`, allocates the key only when it is inserted.
pub(crate) fn entry_or<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    default: impl FnOnce() -> Value,
) -> &'a mut Value {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), default());
    }
    // Present: inserted above when it was not.
    map.get_mut(key)
        .unwrap_or_else(|| unreachable!("`{key}` was just inserted"))
}

/// Appends `items` to the list at `key`, creating it. Returns false if `key` holds a non-list.
pub(crate) fn append_list(
    map: &mut Map<String, Value>,
    key: &str,
    items: impl IntoIterator<Item = Value>,
) -> bool {
    match entry_or(map, key, || Value::Array(Vec::new())) {
        Value::Array(list) => {
            list.extend(items);
            true
        }
        Value::Null => {
            map.insert(key.to_owned(), Value::Array(items.into_iter().collect()));
            true
        }
        _ => false,
    }
}

/// Appends `items` to the list at `key` of every map, as [`append_list`] does: built once,
/// cloned for all but the last map, which gets them moved.
pub(crate) fn append_to_each<'m>(
    maps: impl Iterator<Item = &'m mut Map<String, Value>>,
    key: &str,
    items: Vec<Value>,
) {
    let mut maps = maps.peekable();
    while let Some(map) = maps.next() {
        if maps.peek().is_none() {
            append_list(map, key, items);
            return;
        }
        append_list(map, key, items.iter().cloned());
    }
}

/// Sets `labels[key] = value` on the object's metadata.
pub(crate) fn set_label(object: &mut Map<String, Value>, key: &str, value: &str) {
    set_metadata_entry(object, "labels", key, value);
}

fn set_metadata_entry(object: &mut Map<String, Value>, field: &str, key: &str, value: &str) {
    set_metadata_entries(object, field, [(key, value)]);
}

/// Sets `labels[key] = value` for each pair, finding the labels map once.
pub(crate) fn set_labels<'e>(
    object: &mut Map<String, Value>,
    entries: impl IntoIterator<Item = (&'e str, &'e str)>,
) {
    set_metadata_entries(object, "labels", entries);
}

/// Sets `annotations[key] = value` for each pair, finding the annotations map once.
pub(crate) fn set_annotations<'e>(
    object: &mut Map<String, Value>,
    entries: impl IntoIterator<Item = (&'e str, &'e str)>,
) {
    set_metadata_entries(object, "annotations", entries);
}

/// `metadata.<field>[key] = value` for each pair; a non-object `metadata` or `<field>` is
/// replaced by an object.
fn set_metadata_entries<'e>(
    object: &mut Map<String, Value>,
    field: &str,
    entries: impl IntoIterator<Item = (&'e str, &'e str)>,
) {
    let metadata = entry_or(object, "metadata", || Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    if let Some(metadata) = metadata.as_object_mut() {
        let map = entry_or(metadata, field, || Value::Object(Map::new()));
        if !map.is_object() {
            *map = Value::Object(Map::new());
        }
        if let Some(map) = map.as_object_mut() {
            for (key, value) in entries {
                let value = Value::String(value.to_owned());
                match map.get_mut(key) {
                    Some(slot) => *slot = value,
                    None => drop(map.insert(key.to_owned(), value)),
                }
            }
        }
    }
}

/// `path.key`, quoting keys that contain `.` or `/` (label and annotation keys).
pub(crate) fn join(path: &str, key: &str) -> String {
    let quoted = key.contains(['.', '/', ' ']);
    match (path.is_empty(), quoted) {
        (true, false) => key.to_owned(),
        (true, true) => format!("\"{key}\""),
        (false, false) => format!("{path}.{key}"),
        (false, true) => format!("{path}.\"{key}\""),
    }
}

/// Appends `key` to `path` as [`join`] does, in place.
pub(crate) fn push_key(path: &mut String, key: &str) {
    let quoted = key.bytes().any(|b| matches!(b, b'.' | b'/' | b' '));
    if !path.is_empty() {
        path.push('.');
    }
    if quoted {
        path.push('"');
        path.push_str(key);
        path.push('"');
    } else {
        path.push_str(key);
    }
}

/// Appends `[i]` to `path`.
pub(crate) fn push_index(path: &mut String, i: usize) {
    // Digits by hand: `write!` goes through the formatting machinery on every node.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = i;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    path.push('[');
    digits[at..].iter().for_each(|&d| path.push(char::from(d)));
    path.push(']');
}

/// POSIX shell quoting: safe words stay bare, anything else is single-quoted.
pub(crate) fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_and_join() {
        assert_eq!(shell_quote("train.py"), "train.py");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        assert_eq!(
            join("metadata.labels", "wandb.ai/run-id"),
            "metadata.labels.\"wandb.ai/run-id\""
        );
    }

    #[test]
    fn push_key_and_push_index_build_what_join_and_format_path_build() {
        for (root, key) in [
            ("", "a"),
            ("", "a.b"),
            ("x", "spec"),
            ("x", "wandb.ai/run-id"),
            ("x", "a b"),
        ] {
            let mut path = root.to_owned();
            push_key(&mut path, key);
            assert_eq!(path, join(root, key));
        }
        for i in [0, 7, 12, 1_000_000] {
            let mut path = "x".to_owned();
            push_index(&mut path, i);
            assert_eq!(path, format_path("x", &[Step::Index(i)]));
        }
    }
}
