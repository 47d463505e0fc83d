//! Tracks which layer of the render set each field (`launch-render --explain`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::output::{Layer, Provenance};
use crate::walk::join;

/// Records, after each stage of a render, which leaves changed.
pub(crate) struct Tracker {
    enabled: bool,
    previous: Value,
    fields: BTreeMap<String, Layer>,
}

impl Tracker {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            previous: Value::Null,
            fields: BTreeMap::new(),
        }
    }

    /// Attributes every leaf of `current` that differs from the previous snapshot to `layer`.
    pub(crate) fn record(&mut self, current: &Value, layer: Layer) {
        if !self.enabled {
            return;
        }
        diff(Some(&self.previous), current, "", layer, &mut self.fields);
        self.previous = current.clone();
    }

    /// The provenance of the final document, leaves in document order.
    pub(crate) fn finish(self, last: &Value) -> Provenance {
        if !self.enabled {
            return Provenance::default();
        }
        let mut fields = Vec::new();
        leaves(last, "", &mut |path| {
            let layer = self
                .fields
                .get(&path)
                .copied()
                .unwrap_or(Layer::AgentDefault);
            fields.push((path, layer));
        });
        Provenance { fields }
    }
}

fn diff(
    previous: Option<&Value>,
    current: &Value,
    path: &str,
    layer: Layer,
    fields: &mut BTreeMap<String, Layer>,
) {
    match current {
        Value::Object(map) if !map.is_empty() => {
            let before = previous.and_then(Value::as_object);
            for (key, value) in map {
                diff(
                    before.and_then(|b| b.get(key)),
                    value,
                    &join(path, key),
                    layer,
                    fields,
                );
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let before = previous.and_then(Value::as_array);
            for (i, value) in items.iter().enumerate() {
                diff(
                    before.and_then(|b| b.get(i)),
                    value,
                    &format!("{path}[{i}]"),
                    layer,
                    fields,
                );
            }
        }
        leaf => {
            if previous != Some(leaf) {
                fields.insert(path.to_owned(), layer);
            }
        }
    }
}

fn leaves(value: &Value, path: &str, f: &mut impl FnMut(String)) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                leaves(item, &join(path, key), f);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, &format!("{path}[{i}]"), f);
            }
        }
        _ => f(path.to_owned()),
    }
}
