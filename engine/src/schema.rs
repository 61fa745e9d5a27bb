//! The JSON Schema of manifests, with each stage kind's params typed, for editors and `secvec schema`.

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::manifest::Manifest;
use crate::stage::{DynStage, Registry};

/// One param of a stage kind, as `secvec kinds KIND` lists it.
#[derive(Debug, PartialEq)]
pub struct ParamDoc {
    pub name: String,
    /// `integer`, `string or null`, `one of: sft, lpo, safecoder`, …
    pub kind: String,
    pub default: Option<Value>,
    pub required: bool,
    pub doc: String,
}

/// A kind's params with their types, defaults and docs, read from the same JSON Schema that
/// `secvec schema` gives editors.
pub fn params_of(kind: &dyn DynStage) -> Vec<ParamDoc> {
    let mut generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = kind.params_schema(&mut generator).to_value();
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    let required = |name: &str| {
        schema["required"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == name))
    };
    properties
        .iter()
        .map(|(name, p)| ParamDoc {
            name: name.clone(),
            kind: type_of(p),
            default: p.get("default").cloned(),
            required: required(name),
            doc: p["description"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// The type of a property schema in words.
fn type_of(p: &Value) -> String {
    if let Some(values) = p["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
            .collect();
        return format!("one of: {}", names.join(", "));
    }
    if let Some(forms) = p["oneOf"].as_array().or(p["anyOf"].as_array()) {
        let names: Vec<String> = forms.iter().map(type_of).collect();
        return names.join(" or ");
    }
    if let Some(c) = p.get("const") {
        return c.to_string();
    }
    let one = |t: &Value| match t.as_str() {
        Some("array") => format!("list of {}", type_of(&p["items"])),
        Some(t) => t.to_string(),
        None => "any".to_string(),
    };
    match &p["type"] {
        Value::Array(types) => types.iter().map(one).collect::<Vec<_>>().join(" or "),
        Value::Null => "any".to_string(),
        t => one(t),
    }
}

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
