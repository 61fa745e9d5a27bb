//! The JSON Schema of manifests, with each stage kind's params typed, for editors and `secvec schema`.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::manifest::Manifest;
use crate::stage::Registry;

pub fn manifest_schema(registry: &Registry) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let variants: Vec<Value> = registry
        .kinds()
        .map(|k| {
            let params = k.params_schema(&mut generator).to_value();
            let slots = k.inputs();
            let properties: Map<String, Value> = slots
                .iter()
                .map(|s| {
                    let doc = format!("{} (takes {}{})", s.doc, s.describe(), if s.many { ", several" } else { "" });
                    (s.name.to_string(), json!({"description": doc, "$ref": "#/definitions/InputBinding"}))
                })
                .collect();
            let required: Vec<&str> = slots.iter().filter(|s| !s.optional).map(|s| s.name).collect();
            json!({
                "type": "object",
                "description": k.description(),
                "additionalProperties": false,
                "required": ["kind"],
                "properties": {
                    "kind": {"const": k.kind()},
                    "params": params,
                    "inputs": {"type": "object", "additionalProperties": false, "properties": properties, "required": required},
                    "matrix": {
                        "description": "Runs the stage once per combination of these param values (keys are param paths).",
                        "type": "object",
                        "additionalProperties": {"type": "array"}
                    }
                }
            })
        })
        .collect();
    let mut root = generator.into_root_schema_for::<Manifest>().to_value();
    root["title"] = json!("secvec manifest");
    root["definitions"]["StageSpec"] = json!({"oneOf": variants});
    root
}
