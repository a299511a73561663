//! Conversions between the tools layer's data and rmcp's model types, in one place (like
//! rust-analyzer's `to_proto.rs`).

use std::sync::Arc;

use coldquery_tools::{ResourceError, ToolOutput, ToolSpec, prompts, resources};
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorData, JsonObject, Prompt, PromptArgument, Resource, ResourceTemplate, Tool,
    ToolAnnotations,
};
use serde_json::{Value, json};

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        // Every schema of the registry is an object; anything else is wrapped so that the
        // advertised schema stays well-formed.
        other => {
            let mut map = JsonObject::new();
            map.insert("type".into(), Value::String("object".into()));
            map.insert("description".into(), other);
            map
        }
    }
}

/// An MCP tool from a registry entry: title, description, annotations, input and output schema.
pub(crate) fn tool(spec: ToolSpec) -> Tool {
    // The tool's title is not repeated in its annotations.
    let annotations = ToolAnnotations::new()
        .read_only(spec.annotations.read_only)
        .destructive(spec.annotations.destructive)
        .idempotent(spec.annotations.idempotent)
        .open_world(spec.annotations.open_world);
    Tool::new(spec.name, spec.description, Arc::new(object(spec.input_schema)))
        .with_title(spec.title)
        .with_raw_output_schema(Arc::new(object(spec.output_schema)))
        .with_annotations(annotations)
}

/// A tool result: the JSON as `structuredContent` and as text (markdown or CSV when the call
/// asked for that format); an error is an `isError` result whose body is `{"error": {...}}`.
/// With `wire_writes_json`, the JSON goes to the wire as the tools wrote it, as text
/// ([`crate::lines::STRUCTURED_JSON`], and [`crate::lines::JSON_TEXT`] for a text that is the
/// JSON): the wire writes it without building its values, and serializes it once.
pub(crate) fn call_result(output: ToolOutput, wire_writes_json: bool) -> CallToolResult {
    let is_error = output.is_error();
    let (structured, text) = if wire_writes_json {
        let (json, rendering) = output.into_json_text_and_rendering();
        // An object, as every tool's result is: rmcp rewrites other structured content for
        // older clients.
        if json.starts_with('{') {
            let text = rendering.unwrap_or_else(|| crate::lines::JSON_TEXT.to_owned());
            let mut carrier = JsonObject::new();
            carrier.insert(crate::lines::STRUCTURED_JSON.to_owned(), Value::String(json));
            (Value::Object(carrier), text)
        } else {
            let value = serde_json::from_str(&json).unwrap_or(Value::Null);
            (value, rendering.unwrap_or(json))
        }
    } else {
        output.into_json_and_text()
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.is_error = Some(is_error);
    result.structured_content = Some(structured);
    result
}

/// A resource that could not be read, as MCP's error: not found for an unknown URI or an object
/// that does not exist, invalid params for a malformed URI, internal for a failed read. The
/// data carries the URI and the tools' error body.
pub(crate) fn resource_error(failure: ResourceError, uri: String) -> ErrorData {
    let data = |error: &coldquery_core::Error| json!({"uri": uri, "error": error.to_json()["error"]});
    match &failure {
        ResourceError::NotFound(error) => ErrorData::resource_not_found(error.message().to_owned(), Some(data(error))),
        ResourceError::BadUri(error) => ErrorData::invalid_params(error.message().to_owned(), Some(data(error))),
        ResourceError::Failed(error) => ErrorData::internal_error(error.message().to_owned(), Some(data(error))),
    }
}

/// The fixed resources.
pub(crate) fn resources() -> Vec<Resource> {
    resources::resources()
        .into_iter()
        .map(|r| Resource::new(r.uri, r.name).with_description(r.description).with_mime_type(r.mime_type))
        .collect()
}

/// The resource templates.
pub(crate) fn resource_templates() -> Vec<ResourceTemplate> {
    resources::resource_templates()
        .into_iter()
        .map(|t| {
            ResourceTemplate::new(t.uri_template, t.name).with_description(t.description).with_mime_type(t.mime_type)
        })
        .collect()
}

/// The prompts.
pub(crate) fn prompts() -> Vec<Prompt> {
    prompts::prompts()
        .into_iter()
        .map(|p| {
            let arguments: Vec<PromptArgument> = p
                .arguments
                .iter()
                .map(|a| PromptArgument::new(a.name).with_description(a.description).with_required(a.required))
                .collect();
            Prompt::new(p.name, Some(p.description), if arguments.is_empty() { None } else { Some(arguments) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldquery_core::{Error, ErrorKind};
    use coldquery_tools::{TextFormat, tool_specs};

    #[test]
    fn tools_carry_titles_annotations_and_schemas() {
        let tools: Vec<Tool> = tool_specs().into_iter().map(tool).collect();
        assert_eq!(tools.len(), 5);
        for t in &tools {
            let annotations = t.annotations.as_ref().unwrap();
            assert_eq!(annotations.open_world_hint, Some(false), "{}", t.name);
            assert_eq!(annotations.read_only_hint, Some(t.name == "pg_monitor"), "{}", t.name);
            assert_eq!(annotations.destructive_hint, Some(t.name != "pg_monitor"), "{}", t.name);
            assert!(t.title.is_some() && t.output_schema.is_some());
            assert_eq!(t.input_schema["type"], "object");
        }
    }

    #[test]
    fn results_carry_structured_content_and_text() {
        let ok = ToolOutput::new(Ok(json!({"rows": [{"a": 1}]})), TextFormat::Json);
        let result = call_result(ok, false);
        assert_eq!(result.structured_content, Some(json!({"rows": [{"a": 1}]})));
        assert_eq!(result.is_error, Some(false));
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"rows": [{"a": 1}]}));
        let err = ToolOutput::new(Err(Error::new(ErrorKind::WriteDenied, "m")), TextFormat::Markdown);
        let result = call_result(err, false);
        assert_eq!(result.is_error, Some(true));
        let body = json!({"error": {"code": "WRITE_DENIED", "message": "m"}});
        assert_eq!(result.structured_content, Some(body.clone()));
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), body, "an error's text is its JSON body");
    }

    /// For a wire that writes the JSON text itself, the JSON goes as text; a markdown table
    /// stays the text content.
    #[test]
    fn the_json_text_is_left_to_the_wire_that_writes_it() {
        use crate::lines::{JSON_TEXT, STRUCTURED_JSON};
        let rows = json!({"fields": [{"name": "a", "type": "int4"}], "rows": [{"a": 1}], "truncated": false});
        let carried = json!({STRUCTURED_JSON: rows.to_string()});
        let json = ToolOutput::new(Ok(rows.clone()), TextFormat::Json);
        let result = call_result(json, true);
        assert_eq!(result.content[0].as_text().unwrap().text, JSON_TEXT);
        assert_eq!(result.structured_content, Some(carried.clone()));
        let table = ToolOutput::new(Ok(rows), TextFormat::Markdown);
        let result = call_result(table, true);
        assert!(result.content[0].as_text().unwrap().text.starts_with("| a |"), "{:?}", result.content);
        assert_eq!(result.structured_content, Some(carried));
        // Something other than an object (no tool returns one) is left to rmcp.
        let result = call_result(ToolOutput::new(Ok(json!([1])), TextFormat::Json), true);
        assert_eq!(result.structured_content, Some(json!([1])));
        assert_eq!(result.content[0].as_text().unwrap().text, "[1]");
    }
}
