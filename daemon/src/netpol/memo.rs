//! Conversions of API objects to the engine's model, kept between syncs:
//! an object is converted again only when its resourceVersion changes, so
//! a sync converts what changed, not every object of the cluster (it
//! still assembles the whole snapshot).

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use crate::policy::convert::{ConvertError, Converted};

/// One kind's converted objects by `namespace/name`.
pub(super) struct Memo<K, T> {
    convert: fn(&K) -> Result<Converted<T>, ConvertError>,
    by_key: HashMap<String, Entry<T>>,
}

struct Entry<T> {
    version: Option<String>,
    value: Option<T>,
    /// What the conversion refused, as logged.
    left_out: Vec<String>,
}

impl<K: ResourceExt, T: Clone> Memo<K, T> {
    pub fn new(convert: fn(&K) -> Result<Converted<T>, ConvertError>) -> Self {
        Self {
            convert,
            by_key: HashMap::new(),
        }
    }

    /// Every object of `objects` converted (again only where it changed),
    /// and what was left out; objects no longer there are forgotten.
    pub fn update(&mut self, objects: &[Arc<K>], values: &mut Vec<T>, left_out: &mut Vec<String>) {
        let mut seen = HashMap::with_capacity(objects.len());
        for object in objects {
            let key = format!(
                "{}/{}",
                object.namespace().unwrap_or_default(),
                object.name_any()
            );
            let version = object.resource_version();
            let entry = match self.by_key.remove(&key) {
                Some(e) if e.version.is_some() && e.version == version => e,
                _ => {
                    let (value, refused) = match (self.convert)(object) {
                        Ok(c) => (Some(c.value), c.left_out),
                        Err(e) => (None, vec![e]),
                    };
                    Entry {
                        version,
                        value,
                        left_out: refused.iter().map(|e| e.to_string()).collect(),
                    }
                }
            };
            values.extend(entry.value.iter().cloned());
            left_out.extend(entry.left_out.iter().cloned());
            seen.insert(key, entry);
        }
        self.by_key = seen;
    }
}
