//! What may be shown of the settings: the masked view `check-config` prints, which `Debug`
//! prints too.

use super::Settings;

/// Debug shows the masked form: the raw config and plugin sections hold secrets in clear.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Settings({}) {}",
            self.source,
            self.masked_with(&|_| None)
        )
    }
}

impl Settings {
    /// The effective settings as JSON, every secret masked by its type: the host's sections
    /// serialize their `Secret`s as `***`, and each compiled plugin shows its section through its
    /// typed config (`PluginRegistration::show`). A section no compiled plugin reads (or one its
    /// plugin cannot read) shows its keys with every value masked. The userinfo of any URL left
    /// in a plugin section is masked too.
    ///
    /// `show` gives a plugin section's typed view (the registry's, see
    /// `plugin::masked_settings`); `None` masks every value of that section.
    pub fn masked_with(
        &self,
        show: &dyn Fn(&str) -> Option<serde_json::Value>,
    ) -> serde_json::Value {
        use serde_json::Value;
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(Value::Object(plugins)) = v.get_mut("plugins") {
            for (name, section) in plugins.iter_mut() {
                let shown = show(name);
                let enabled = section.get("enabled").cloned();
                *section = match shown {
                    Some(Value::Object(mut typed)) => {
                        if let Some(on) = enabled {
                            typed.entry("enabled").or_insert(on);
                        }
                        Value::Object(typed)
                    }
                    _ => {
                        mask_every_value(section);
                        if let (Some(on), Value::Object(m)) = (enabled, &mut *section) {
                            m.insert("enabled".into(), on);
                        }
                        section.take()
                    }
                };
                redact_url_userinfo(section);
            }
        }
        v
    }
}

/// Every string and number of a section no plugin's type describes, masked: which of them is a
/// secret is not known.
fn mask_every_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => map.values_mut().for_each(mask_every_value),
        Value::Array(a) => a.iter_mut().for_each(mask_every_value),
        Value::String(_) | Value::Number(_) => *v = Value::String("***".into()),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The userinfo of every URL in a value, masked (`https://user:***@host`).
fn redact_url_userinfo(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => map.values_mut().for_each(redact_url_userinfo),
        Value::Array(a) => a.iter_mut().for_each(redact_url_userinfo),
        Value::String(s) if s.contains("://") => *s = crate::config::redact::url(s),
        _ => {}
    }
}
