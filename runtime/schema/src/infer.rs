//! A first schema for an event type, proposed from samples of its `data` (`sluice schema
//! infer`): the types seen at each place, the properties every sample has as `required`.
//! A proposal to edit, not a contract: it knows only the samples it was shown.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// What the samples held at one place.
#[derive(Default)]
struct Shape {
    null: bool,
    boolean: bool,
    integer: bool,
    number: bool,
    string: bool,
    /// Objects seen here, and each property's shape with how many of them had it.
    objects: usize,
    properties: BTreeMap<String, (usize, Shape)>,
    /// Elements of every array seen here.
    array: bool,
    items: Option<Box<Shape>>,
}

impl Shape {
    fn add(&mut self, v: &Value) {
        match v {
            Value::Null => self.null = true,
            Value::Bool(_) => self.boolean = true,
            Value::Number(n) if n.is_i64() || n.is_u64() => self.integer = true,
            Value::Number(_) => self.number = true,
            Value::String(_) => self.string = true,
            Value::Array(items) => {
                self.array = true;
                let shape = self.items.get_or_insert_with(Box::default);
                for i in items {
                    shape.add(i);
                }
            }
            Value::Object(m) => {
                self.objects += 1;
                for (k, v) in m {
                    let (n, shape) = self.properties.entry(k.clone()).or_default();
                    *n += 1;
                    shape.add(v);
                }
            }
        }
    }

    fn schema(&self) -> Value {
        let mut types = Vec::new();
        for (seen, name) in [
            (self.objects > 0, "object"),
            (self.array, "array"),
            (self.string, "string"),
            (self.number, "number"),
            // An integer among fractions is a number.
            (self.integer && !self.number, "integer"),
            (self.boolean, "boolean"),
            (self.null, "null"),
        ] {
            if seen {
                types.push(name);
            }
        }
        let mut out = Map::new();
        match types.as_slice() {
            [] => return json!({}),
            [one] => {
                out.insert("type".into(), json!(one));
            }
            many => {
                out.insert("type".into(), json!(many));
            }
        }
        if self.objects > 0 {
            let props: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, (_, s))| (k.clone(), s.schema()))
                .collect();
            let required: Vec<&String> = self
                .properties
                .iter()
                .filter(|(_, (n, _))| *n == self.objects)
                .map(|(k, _)| k)
                .collect();
            out.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                out.insert("required".into(), json!(required));
            }
        }
        if let Some(items) = &self.items {
            out.insert("items".into(), items.schema());
        }
        Value::Object(out)
    }
}

/// A JSON Schema (draft 2020-12) that every sample satisfies.
pub fn infer<'a>(samples: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut shape = Shape::default();
    for s in samples {
        shape.add(s);
    }
    let mut schema = shape.schema();
    if let Value::Object(m) = &mut schema {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn required_is_what_every_sample_has() {
        let samples = [
            json!({"id": "a", "total": 3, "items": [{"sku": "x", "qty": 1}]}),
            json!({"id": "b", "total": 2.5, "note": null, "items": []}),
        ];
        let s = infer(&samples);
        assert_eq!(s["type"], "object");
        assert_eq!(s["required"], json!(["id", "items", "total"]));
        assert_eq!(s["properties"]["total"]["type"], "number");
        assert_eq!(s["properties"]["note"]["type"], "null");
        assert_eq!(
            s["properties"]["items"]["items"]["required"],
            json!(["qty", "sku"])
        );
        assert_eq!(
            s["properties"]["items"]["items"]["properties"]["qty"]["type"],
            "integer"
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the samples, each of them passes the schema proposed from them.
        #[test]
        fn every_sample_passes_the_inferred_schema(samples in prop::collection::vec(value(), 1..6)) {
            let schema = infer(&samples);
            let v = crate::compile(&schema).unwrap();
            for s in &samples {
                prop_assert!(v.is_valid(s), "{s} fails {schema}");
            }
        }
    }
}
