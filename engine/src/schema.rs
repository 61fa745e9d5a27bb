//! The JSON Schema of manifests, with each stage kind's params typed, for editors and `secvec schema`.

use schemars::generate::SchemaSettings;
use secvec_stage::{DynStage, Registry};
use serde_json::{json, Map, Value};

use crate::manifest::Manifest;

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

/// The JSON Schema of manifests: each stage's `params` and `inputs` typed by an `if kind == X
/// then …` clause, so an editor reports the one field that is wrong rather than "matches none
/// of N kinds".
pub fn manifest_schema(registry: &Registry) -> Value {
    schema(registry, false)
}

/// The JSON Schema of overlays: the manifest's keys, none required, each deletable with `null`
/// (a stage, a source, a param), params typed when the overlay names the stage's kind.
pub fn overlay_schema(registry: &Registry) -> Value {
    schema(registry, true)
}

fn schema(registry: &Registry, overlay: bool) -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let kinds: Vec<(&dyn DynStage, Value)> = registry
        .kinds()
        .map(|k| (k.as_ref(), k.params_schema(&mut generator).to_value()))
        .collect();
    let mut root = generator.into_root_schema_for::<Manifest>().to_value();
    let definitions = root["definitions"]
        .as_object_mut()
        .expect("schemars writes definitions");
    if overlay {
        for (name, d) in definitions.iter_mut() {
            // An input binding is replaced whole, never merged: it keeps its own shape.
            if !name.starts_with("Input") {
                loosen(d);
            }
        }
    }
    // A kind's params as its own copy, not a reference to the shared definition.
    let inline = |params: &Value| match params["$ref"].as_str().and_then(|r| r.strip_prefix("#/definitions/")) {
        Some(name) => definitions[name].clone(),
        None => params.clone(),
    };
    let clauses: Vec<Value> = kinds
        .iter()
        .map(|(k, params)| {
            // A required param may come from the stage's matrix or the manifest's defaults.
            let mut params = inline(params);
            if let Some(p) = params.as_object_mut() {
                p.remove("required");
            }
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
                "if": {"properties": {"kind": {"const": k.kind()}}, "required": ["kind"]},
                "then": {
                    "description": k.description(),
                    "properties": {
                        "params": params,
                        "inputs": {"type": "object", "additionalProperties": false, "properties": properties, "required": required}
                    }
                }
            })
        })
        .collect();
    let names: Vec<&str> = kinds.iter().map(|(k, _)| k.kind()).collect();
    let mut stage = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "kind": {"description": "The stage kind (`secvec kinds` lists them).", "enum": names},
            "params": {"description": "Parameters, typed per kind.", "type": "object"},
            "inputs": {
                "description": "Input slots of the kind, each bound to other stages (`stage`, or `stage[*]` to gather all variants of a matrix stage) or to files on disk (`{path: ...}`).",
                "type": "object",
                "additionalProperties": {"$ref": "#/definitions/InputBinding"}
            },
            "matrix": {
                "description": "Runs the stage once per combination of these param values (keys are param paths).",
                "type": "object",
                "additionalProperties": {"type": "array"}
            },
            "labels": {
                "description": "Constant labels (e.g. `strategy: LPO`) that name the stage's output and become report columns.",
                "type": "object",
                "additionalProperties": {"type": "string"}
            },
            "resources": {
                "description": "What each attempt reserves, overriding what the kind declares; a cluster's scheduler enforces them.",
                "$ref": "#/definitions/ResourceSpec"
            },
            "retries": {
                "description": "Attempts after a failed one; one after running out of memory or time gets twice as much.",
                "type": "integer",
                "minimum": 0
            }
        },
        "allOf": clauses
    });
    if overlay {
        // Partial throughout: the stage and every clause's params and inputs; an input slot,
        // like a param, is deleted with `null` (an overlay that serves a model unbinds `model`).
        loosen(&mut stage);
        stage["properties"]["inputs"]["additionalProperties"] = nullable(json!({"$ref": "#/definitions/InputBinding"}));
        stage = nullable(stage);
    } else {
        stage["required"] = json!(["kind"]);
    }
    // Defaults per kind: each kind's params, any of them.
    let per_kind: Map<String, Value> = kinds
        .iter()
        .map(|(k, params)| {
            let mut params = inline(params);
            loosen(&mut params);
            (k.kind().to_string(), params)
        })
        .collect();
    definitions.insert("StageSpec".into(), stage);
    definitions["Defaults"]["properties"]["kinds"] = json!({
        "description": "Params every stage of a kind takes unless it sets its own, e.g. `generate: {n: 100, temperature: 0.1}`.",
        "type": "object",
        "additionalProperties": false,
        "properties": per_kind
    });
    if overlay {
        root.as_object_mut().expect("an object").remove("required");
        for key in ["description", "defaults", "sources"] {
            let p = &mut root["properties"][key];
            *p = nullable(p.take());
        }
        root["properties"]["sources"]["additionalProperties"] = json!({"type": ["string", "null"]});
        root["title"] = json!("secvec overlay");
        root["description"] = json!("Deep-merged onto a manifest (`secvec run MANIFEST -o OVERLAY`): keys replace the manifest's, mappings merge, `null` deletes a key.");
    } else {
        root["title"] = json!("secvec manifest");
    }
    root
}

/// `schema` or `null`. A typed schema gains `null` among its types, so a wrong value inside it
/// is still reported where it is rather than as "matches no alternative".
fn nullable(mut schema: Value) -> Value {
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = t.clone();
            schema["type"] = json!([t, "null"]);
            return schema;
        }
        Some(Value::Array(types)) => {
            if !types.contains(&json!("null")) {
                types.push(json!("null"));
            }
            return schema;
        }
        _ => {}
    }
    let description = schema.get("description").cloned();
    let mut wrapped = json!({"anyOf": [schema, {"type": "null"}]});
    if let Some(d) = description {
        wrapped["description"] = d;
    }
    wrapped
}

/// Makes an object schema partial, as an overlay writes it: nothing required, and each property
/// deletable with `null`. Nested objects are loosened too.
fn loosen(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else { return };
    object.remove("required");
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for p in properties.values_mut() {
            loosen(p);
            *p = nullable(p.take());
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = object.get_mut(key) {
            list.iter_mut().for_each(loosen);
        }
    }
    for key in ["items", "additionalProperties", "then"] {
        if let Some(v) = object.get_mut(key) {
            loosen(v);
        }
    }
}
