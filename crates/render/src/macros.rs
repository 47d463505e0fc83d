//! `${name}` macro substitution over string leaves of `resource_args`, with W&B's agent's
//! syntax (`${` word characters `}`; keys are never substituted).
//!
//! Differs from W&B's agent, which expands `${ANY_ENV_VAR}` from the agent process,
//! which lets a queue submitter copy `WANDB_API_KEY` or cloud credentials into their pod. Here
//! only the six named macros and the agent environment variables an admin lists are expanded
//! (the caller passes just those values), and a named macro whose value is missing renders as
//! the empty string with a warning instead of the literal `None`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::walk::push_index;

/// Values of the named macros for one run, borrowed from the run spec and context.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MacroValues<'v> {
    /// `${project_name}`
    pub(crate) project_name: Option<&'v str>,
    /// `${entity_name}`
    pub(crate) entity_name: Option<&'v str>,
    /// `${run_id}`
    pub(crate) run_id: Option<&'v str>,
    /// `${run_name}`
    pub(crate) run_name: Option<&'v str>,
    /// `${image_uri}`
    pub(crate) image_uri: Option<&'v str>,
    /// `${author}`
    pub(crate) author: Option<&'v str>,
}

/// Expands macros in place, returning warnings (missing values, unknown macros).
pub(crate) struct MacroExpander<'a> {
    named: [(&'static str, Option<&'a str>); 6],
    env: &'a BTreeMap<String, String>,
    warnings: Vec<String>,
}

impl<'a> MacroExpander<'a> {
    /// An expander for one run.
    pub(crate) fn new(values: MacroValues<'a>, env: &'a BTreeMap<String, String>) -> Self {
        Self {
            named: [
                ("project_name", values.project_name),
                ("entity_name", values.entity_name),
                ("run_id", values.run_id),
                ("run_name", values.run_name),
                ("image_uri", values.image_uri),
                ("author", values.author),
            ],
            env,
            warnings: Vec::new(),
        }
    }

    /// Substitutes every string leaf of `value` (keys are left alone). `path` names `value`
    /// in warnings.
    pub(crate) fn expand_value(&mut self, value: &mut Value, path: &str) {
        let mut path = path.to_owned();
        self.expand_at(value, &mut path);
    }

    /// [`Self::expand_value`] with the path in a buffer that each level extends and truncates
    /// back, so a walk allocates no path per node (paths are only read for warnings).
    fn expand_at(&mut self, value: &mut Value, path: &mut String) {
        match value {
            Value::String(text) if has_macro(text) => {
                *text = self.expand_str(text, path);
            }
            Value::Array(items) => {
                let len = path.len();
                for (i, item) in items.iter_mut().enumerate() {
                    push_index(path, i);
                    self.expand_at(item, path);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                let len = path.len();
                for (key, item) in map.iter_mut() {
                    path.push('.');
                    path.push_str(key);
                    self.expand_at(item, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Substitutes macros in one string.
    fn expand_str(&mut self, text: &str, path: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let name_len = after
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map_or(after.len(), |(i, _)| i);
            let closes = after[name_len..].starts_with('}');
            if name_len == 0 || !closes {
                out.push_str("${");
                rest = after;
                continue;
            }
            let name = &after[..name_len];
            match self.lookup(name, path) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                }
            }
            rest = &after[name_len + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The value of macro `name`, borrowed (an empty one for a named macro without a value);
    /// `None` leaves the macro as is. Either with a warning.
    fn lookup(&mut self, name: &str, path: &str) -> Option<&'a str> {
        if let Some((_, value)) = self.named.iter().find(|(known, _)| *known == name) {
            let value = *value;
            if value.is_none() {
                self.warnings.push(format!(
                    "{path}: macro ${{{name}}} has no value for this run and was replaced by an empty string"
                ));
            }
            return Some(value.unwrap_or_default());
        }
        if let Some(value) = self.env.get(name) {
            return Some(value.as_str());
        }
        self.warnings.push(format!(
            "{path}: ${{{name}}} is neither a known macro nor an allow-listed agent variable and was left as is \
             (known: project_name, entity_name, run_id, run_name, image_uri, author; admins can allow \
             agent environment variables with macro_env_allowlist)"
        ));
        None
    }

    /// Warnings collected so far.
    pub(crate) fn into_warnings(self) -> Vec<String> {
        self.warnings
    }
}

/// Whether `text` contains `${`, scanning bytes (a substring search sets up a searcher for
/// every string leaf).
fn has_macro(text: &str) -> bool {
    text.as_bytes().windows(2).any(|pair| pair == b"${")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values() -> MacroValues<'static> {
        MacroValues {
            project_name: Some("proj"),
            entity_name: Some("ent"),
            run_id: Some("r1"),
            run_name: None,
            image_uri: Some("img:1"),
            author: Some("ann"),
        }
    }

    #[test]
    fn expands_named_and_allow_listed_only() {
        let values = values();
        let mut env = BTreeMap::new();
        env.insert("REGION".to_owned(), "eu".to_owned());
        let mut expander = MacroExpander::new(values, &env);
        let mut doc = json!({"a": "${image_uri}-${run_id}", "b": ["${REGION}", "${WANDB_API_KEY}"],
                             "${run_id}": "key untouched", "c": "${run-id} $${run_id} ${", "d": 3});
        expander.expand_value(&mut doc, "x");
        assert_eq!(
            doc,
            json!({"a": "img:1-r1", "b": ["eu", "${WANDB_API_KEY}"], "${run_id}": "key untouched",
                   "c": "${run-id} $r1 ${", "d": 3})
        );
        let warnings = expander.into_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("WANDB_API_KEY"));
    }

    #[test]
    fn missing_named_value_is_empty_with_a_warning_not_none() {
        let values = values();
        let env = BTreeMap::new();
        let mut expander = MacroExpander::new(values, &env);
        assert_eq!(expander.expand_str("name-${run_name}", "p"), "name-");
        let warnings = expander.into_warnings();
        assert!(warnings[0].starts_with("p: macro ${run_name} has no value"));
    }
}
