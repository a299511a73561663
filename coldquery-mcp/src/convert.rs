//! Conversions between the tools layer's data and rmcp's model types, in one place (like
//! rust-analyzer's `to_proto.rs`).

use std::sync::Arc;

use coldquery_tools::{ToolOutput, ToolSpec, prompts, resources};
use rmcp::model::{
    CallToolResult, ContentBlock, JsonObject, Prompt, PromptArgument, Resource, ResourceTemplate, Tool, ToolAnnotations,
};
use serde_json::Value;

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
/// asked for that format); an error body is an `isError` result.
pub(crate) fn call_result(output: ToolOutput) -> CallToolResult {
    // The text is rendered once and the value moved, not copied (rmcp's `structured` would
    // serialize it a second time).
    let mut result = CallToolResult::success(vec![ContentBlock::text(output.text())]);
    result.is_error = Some(output.is_error);
    result.structured_content = Some(output.value);
    result
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
    use coldquery_tools::{TextFormat, tool_specs};
    use serde_json::json;

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
        let ok = ToolOutput { value: json!({"rows": [{"a": 1}]}), is_error: false, format: TextFormat::Json };
        let result = call_result(ok);
        assert_eq!(result.structured_content, Some(json!({"rows": [{"a": 1}]})));
        assert_eq!(result.is_error, Some(false));
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({"rows": [{"a": 1}]}));
        let err = ToolOutput {
            value: json!({"error": {"code": "WRITE_DENIED", "message": "m"}}),
            is_error: true,
            format: TextFormat::Json,
        };
        let result = call_result(err);
        assert_eq!(result.is_error, Some(true));
        assert!(result.structured_content.unwrap()["error"].is_object());
    }
}
