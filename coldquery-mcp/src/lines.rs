//! The stdio wire: JSON-RPC messages, one per line, on the server's stdin and stdout.
//!
//! rmcp's `AsyncRwTransport` does the same for any message; this one keeps its behaviour and
//! knows ColdQuery's two hot messages (measured with callgrind, docs/PERFORMANCE.md):
//! - a `tools/call` request is decoded by rmcp's own code for that one kind of request; rmcp
//!   decodes a line by trying each kind of request in turn, which was 16% of the instructions
//!   of a `SELECT 1` call;
//! - a tool result comes from the tools as JSON text (`convert::call_result` carries it to this
//!   wire in a one-member object, `STRUCTURED_JSON`), and is written as is as the structured
//!   content and, escaped, as the text content when that is the JSON (`JSON_TEXT`): no tree of
//!   values is built for it, and it is serialized once. Serialized by rmcp, a large result was
//!   serialized three times.
//!
//! Kept from rmcp: lines of at most [`MAX_LINE_BYTES`] (a longer one is dropped and logged), a
//! UTF-8 byte order mark and a `\r` before the newline ignored, empty and unparsable lines
//! ignored, well-formed JSON that is not a JSON-RPC message answered with "Invalid request"
//! (but a notification with a method MCP does not define is ignored), and reads that can be
//! cancelled between any two awaits without losing a byte. Lines are written whole and never
//! interleave; after a failed write nothing more is written.

use std::future::Future;
use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{CallToolRequest, CallToolResult, ClientRequest, ErrorData, JsonRpcMessage, RequestId, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The longest line read (rmcp's limit too).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The text of a tool result whose text content is the compact JSON of its structured content,
/// written by this wire. No tool's own text can be it: a JSON text starts with `{`, and a
/// markdown or CSV one has a header line.
pub(crate) const JSON_TEXT: &str = "\u{0}coldquery: the text is the JSON of the structured content\u{0}";

/// The one key of the object that carries a tool result's structured content to this wire as
/// its compact JSON text (an object, so that rmcp leaves it where it is for every client). The
/// wire writes the text in its place; it is never sent.
pub(crate) const STRUCTURED_JSON: &str = "\u{0}coldquery: the structured content is this JSON text\u{0}";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The server's side of the stdio wire over `read` and `write`.
pub struct Lines<R, W> {
    read: BufReader<R>,
    /// The line being read: kept across cancelled reads.
    line: Vec<u8>,
    /// Dropping the rest of a line that is over the limit.
    discarding: bool,
    out: Arc<tokio::sync::Mutex<Out<W>>>,
    /// A line that was JSON but not a JSON-RPC message waits for its "Invalid request".
    invalid: bool,
    /// That answer is queued and not yet known to be written.
    flushing: bool,
}

impl<R, W> std::fmt::Debug for Lines<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").field("buffered", &self.line.len()).field("discarding", &self.discarding).finish()
    }
}

/// The writing half, shared by every answer being sent. Lines are appended whole to `pending`
/// and written from there, so that a write cancelled half-way is finished by the next one
/// and lines never interleave.
struct Out<W> {
    write: Option<W>,
    pending: Vec<u8>,
    written: usize,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    /// Appends a whole line to what is to be written; nothing is awaited.
    fn enqueue(&mut self, line: Vec<u8>) {
        if self.pending.is_empty() {
            self.pending = line;
            self.written = 0;
        } else {
            self.pending.extend_from_slice(&line);
        }
    }

    /// Writes what is pending. Cancelled, it leaves the rest for the next writer. On an error
    /// the output is given up: nothing more is written after a line that may be torn, and
    /// nothing is kept for a client that is gone.
    async fn drain(&mut self) -> std::io::Result<()> {
        let Some(write) = self.write.as_mut() else {
            self.pending = Vec::new();
            return Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "the transport is closed"));
        };
        let mut outcome = Ok(());
        while self.written < self.pending.len() {
            match write.write(&self.pending[self.written..]).await {
                Ok(0) => outcome = Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => outcome = Err(e),
            }
            if outcome.is_err() {
                break;
            }
        }
        self.pending = Vec::new();
        self.written = 0;
        if outcome.is_ok() {
            outcome = write.flush().await;
        }
        if outcome.is_err() {
            self.write = None;
        }
        outcome
    }

    async fn write_line(&mut self, line: Vec<u8>) -> std::io::Result<()> {
        self.enqueue(line);
        self.drain().await
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Lines<R, W> {
    /// The wire over `read` (stdin) and `write` (stdout).
    pub fn new(read: R, write: W) -> Lines<R, W> {
        Lines {
            read: BufReader::new(read),
            line: Vec::new(),
            discarding: false,
            out: Arc::new(tokio::sync::Mutex::new(Out { write: Some(write), pending: Vec::new(), written: 0 })),
            invalid: false,
            flushing: false,
        }
    }

    /// Reads up to the next newline into `self.line` without letting it grow past
    /// [`MAX_LINE_BYTES`]. Cancellable: bytes are moved from the reader's buffer into `line`
    /// with no await in between.
    async fn read_line(&mut self) -> Read {
        loop {
            let (consumed, step) = {
                let available = match self.read.fill_buf().await {
                    Ok(available) => available,
                    Err(e) => return Read::Failed(e),
                };
                if available.is_empty() {
                    return Read::End;
                }
                let newline = available.iter().position(|b| *b == b'\n');
                let take = newline.map_or(available.len(), |at| at + 1);
                if self.discarding {
                    (take, if newline.is_some() { Step::EndOfDiscarded } else { Step::More })
                } else if self.line.len().saturating_add(take) > MAX_LINE_BYTES {
                    self.line.clear();
                    (take, if newline.is_some() { Step::Oversized } else { Step::OversizedToDiscard })
                } else {
                    self.line.extend_from_slice(&available[..take]);
                    (take, if newline.is_some() { Step::Line } else { Step::More })
                }
            };
            self.read.consume(consumed);
            match step {
                Step::Line => return Read::Line,
                Step::More => {}
                Step::EndOfDiscarded => self.discarding = false,
                Step::Oversized => return Read::Oversized,
                Step::OversizedToDiscard => {
                    self.discarding = true;
                    return Read::Oversized;
                }
            }
        }
    }
}

enum Read {
    Line,
    Oversized,
    End,
    Failed(std::io::Error),
}

enum Step {
    Line,
    More,
    EndOfDiscarded,
    Oversized,
    OversizedToDiscard,
}

/// What a line is.
#[derive(Debug)]
enum Decoded {
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    /// Not JSON, or a notification to ignore.
    Ignored,
    /// JSON, but not a JSON-RPC message.
    Invalid,
}

fn decode(line: &[u8]) -> Decoded {
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    if let Some(call) = tools_call(line) {
        return Decoded::Message(Box::new(call));
    }
    match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line) {
        Ok(message) => Decoded::Message(Box::new(message)),
        Err(e) => match e.classify() {
            // No id to answer, and answering garbage can start an error storm with a peer that
            // echoes it: ignored, as the official SDKs do.
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                tracing::debug!("ignoring a line that is not JSON: {e}");
                Decoded::Ignored
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                if ignored_notification(line) {
                    Decoded::Ignored
                } else {
                    tracing::debug!("a line that is not a JSON-RPC message: {e}");
                    Decoded::Invalid
                }
            }
        },
    }
}

/// A `tools/call` request, decoded by rmcp's own code for that one kind of request (its checks
/// of the message's shape, duplicate keys and ids included); anything else is left to rmcp's
/// decoding of any message.
fn tools_call(line: &[u8]) -> Option<RxJsonRpcMessage<RoleServer>> {
    // Cheap refusal of the other messages before anything is parsed.
    if !line.windows(12).any(|w| w == b"\"tools/call\"") {
        return None;
    }
    match serde_json::from_slice::<JsonRpcMessage<CallToolRequest, Value, Value>>(line).ok()? {
        JsonRpcMessage::Request(request) => {
            Some(JsonRpcMessage::request(ClientRequest::CallToolRequest(request.request), request.id))
        }
        _ => None,
    }
}

/// rmcp's rule: a notification (no id) whose method MCP does not define, or any message whose
/// method is an undefined `notifications/...`, is ignored rather than answered.
fn ignored_notification(line: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let Some(method) = value.get("method").and_then(Value::as_str) else {
        return false;
    };
    (value.get("id").is_none() && !standard_method(method))
        || (method.starts_with("notifications/") && !standard_notification(method))
}

fn standard_method(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "server/discover"
            | "prompts/get"
            | "prompts/list"
            | "resources/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "resources/templates/list"
            | "subscriptions/listen"
            | "tools/call"
            | "tools/list"
            | "completion/complete"
            | "elicitation/create"
            | "logging/setLevel"
            | "roots/list"
            | "sampling/createMessage"
    ) || standard_notification(method)
}

fn standard_notification(method: &str) -> bool {
    matches!(
        method,
        "notifications/cancelled"
            | "notifications/initialized"
            | "notifications/message"
            | "notifications/progress"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/resources/updated"
            | "notifications/roots/list_changed"
            | "notifications/subscriptions/acknowledged"
            | "notifications/tools/list_changed"
    )
}

/// `message` as one line, newline included.
fn encode(message: &TxJsonRpcMessage<RoleServer>) -> Vec<u8> {
    if let JsonRpcMessage::Response(response) = message
        && let ServerResult::CallToolResult(result) = &response.result
    {
        let json = carried_json(result);
        if let (Some(json), Some(text)) = (json, plain_text_of(result)) {
            return encode_tool_result(&response.id, result, json, text);
        }
        let marked = result.content.iter().any(|block| block.as_text().is_some_and(|t| t.text == JSON_TEXT));
        if json.is_some() || marked {
            // Not the shape written directly (rmcp may have added a block): the markers are
            // replaced by the JSON they stand for, never sent.
            let mut response = response.clone();
            if let ServerResult::CallToolResult(result) = &mut response.result {
                let json = match json {
                    Some(json) => {
                        let json = json.to_owned();
                        result.structured_content = coldquery_core::parse_own_json(&json).ok();
                        Some(json)
                    }
                    None => result.structured_content.as_ref().map(Value::to_string),
                };
                result.content.retain_mut(|block| match block {
                    rmcp::model::ContentBlock::Text(text) if text.text == JSON_TEXT => match &json {
                        Some(json) => {
                            text.text.clone_from(json);
                            true
                        }
                        None => false,
                    },
                    _ => true,
                });
            }
            return serialized(&JsonRpcMessage::Response(response));
        }
    }
    serialized(message)
}

fn serialized(message: &TxJsonRpcMessage<RoleServer>) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_else(|e| {
        // rmcp's model types always serialize; should one not, the peer gets an error, not nothing.
        tracing::error!("could not serialize a message: {e}");
        let id = match message {
            JsonRpcMessage::Response(response) => Some(response.id.clone()),
            JsonRpcMessage::Error(error) => error.id.clone(),
            _ => None,
        };
        let error = ErrorData::internal_error("the answer could not be serialized", None);
        serde_json::to_vec(&TxJsonRpcMessage::<RoleServer>::error(error, id)).unwrap_or_default()
    });
    line.push(b'\n');
    line
}

/// The JSON text of a structured content carried to this wire ([`STRUCTURED_JSON`]).
fn carried_json(result: &CallToolResult) -> Option<&str> {
    match result.structured_content.as_ref()? {
        Value::Object(object) if object.len() == 1 => object.get(STRUCTURED_JSON)?.as_str(),
        _ => None,
    }
}

/// The text of a result that has one text block and nothing else on it.
fn plain_text_of(result: &CallToolResult) -> Option<&str> {
    match result.content.as_slice() {
        [block] if result.meta.is_none() => {
            let text = block.as_text()?;
            (text.meta.is_none() && text.annotations.is_none()).then_some(text.text.as_str())
        }
        _ => None,
    }
}

/// The line rmcp would write for this result with `json` as its structured content and `text`
/// as its text ([`JSON_TEXT`]: the JSON itself), byte for byte (a test compares them), without
/// a tree of values.
fn encode_tool_result(id: &RequestId, result: &CallToolResult, json: &str, text: &str) -> Vec<u8> {
    let json_text = text == JSON_TEXT;
    // A JSON text escapes the JSON's quotes and backslashes (its control characters are already
    // escaped): the line's length is known, and it is allocated once.
    let text_len = if json_text {
        json.len() + json.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
    } else {
        text.len() + 16
    };
    let mut line = Vec::with_capacity(json.len() + text_len + 256);
    // Writing to a Vec cannot fail, nor can serializing ids, result types and strings.
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    let _ = serde_json::to_writer(&mut line, id);
    line.extend_from_slice(br#","result":{"#);
    if let Some(kind) = &result.result_type {
        line.extend_from_slice(br#""resultType":"#);
        let _ = serde_json::to_writer(&mut line, kind);
        line.push(b',');
    }
    line.extend_from_slice(br#""content":[{"type":"text","text":"#);
    let _ = serde_json::to_writer(&mut line, if json_text { json } else { text });
    line.extend_from_slice(br#"}],"structuredContent":"#);
    line.extend_from_slice(json.as_bytes());
    if let Some(is_error) = result.is_error {
        line.extend_from_slice(if is_error { br#","isError":true"# } else { br#","isError":false"# });
    }
    line.extend_from_slice(b"}}\n");
    line
}

impl<R, W> Transport<RoleServer> for Lines<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            let line = encode(&item);
            let written = out.lock().await.write_line(line).await;
            // A large result's value is freed after its line is out, not before.
            drop(item);
            written
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            if self.invalid || self.flushing {
                let mut out = self.out.lock().await;
                if self.invalid {
                    // Queued whole with no await in between, and only once: a cancelled
                    // `receive` resumes with the flush (a send may also finish it first).
                    let answer = TxJsonRpcMessage::<RoleServer>::error(
                        ErrorData::invalid_request("Invalid request", None),
                        None,
                    );
                    out.enqueue(encode(&answer));
                    self.invalid = false;
                    self.flushing = true;
                }
                if out.drain().await.is_err() {
                    return None;
                }
                self.flushing = false;
            }
            match self.read_line().await {
                Read::Line => {}
                Read::Oversized => {
                    tracing::error!(max_line_bytes = MAX_LINE_BYTES, "a message over the line limit was dropped");
                    continue;
                }
                Read::End => return None,
                Read::Failed(e) => {
                    tracing::error!("could not read stdin: {e}");
                    return None;
                }
            }
            let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let decoded = if line.is_empty() { Decoded::Ignored } else { decode(line) };
            self.line.clear();
            match decoded {
                Decoded::Message(message) => return Some(*message),
                Decoded::Ignored => {}
                Decoded::Invalid => self.invalid = true,
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.out.lock().await.write = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rmcp_decoded(line: &str) -> Result<RxJsonRpcMessage<RoleServer>, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }

    /// The same message: equal as rmcp shows it and as it serializes it (which writes the
    /// request's `_meta` back from its extensions).
    fn assert_same(fast: &RxJsonRpcMessage<RoleServer>, rmcp: &RxJsonRpcMessage<RoleServer>, line: &str) {
        assert_eq!(format!("{fast:?}"), format!("{rmcp:?}"), "{line}");
        assert_eq!(serde_json::to_value(fast).unwrap(), serde_json::to_value(rmcp).unwrap(), "{line}");
    }

    /// `tools/call` requests decoded here are the messages rmcp decodes from the same lines:
    /// ids of both kinds, `_meta` with a progress token and the 2026-07-28 keys, no arguments.
    #[test]
    fn tools_calls_decode_as_rmcp_decodes_them() {
        let lines = [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pg_query","arguments":{"action":"read","sql":"SELECT 1"}}}"#,
            r#"{"method":"tools/call","params":{"name":"pg_query","arguments":{"sql":"SELECT '\"tools/call\"'","params":[1,"a",null]}},"id":"x-1","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"pg_tx","_meta":{"progressToken":"p"}}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"pg_query","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}"#,
            "\t{ \"jsonrpc\" : \"2.0\", \"id\" : 5, \"method\" : \"tools/call\", \"params\" : { \"name\" : \"pg_query\" } } ",
        ];
        for line in lines {
            let fast = tools_call(line.as_bytes()).unwrap_or_else(|| panic!("not taken: {line}"));
            assert_same(&fast, &rmcp_decoded(line).unwrap(), line);
        }
    }

    /// Lines that are not plain `tools/call` requests are left to rmcp, whose answer (a
    /// message, or an error) they then get.
    #[test]
    fn other_lines_are_left_to_rmcp() {
        let lines = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"pg_query"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pg_query"},"result":{}}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"pg_query"}}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"pg_query"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"pg_query"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"note":"tools/call"}}"#,
            r#"["tools/call"]"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"pg_query"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pg_query","name":"pg_tx"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pg_query"},"params":{"name":"pg_tx"}}"#,
        ];
        for line in lines {
            match (tools_call(line.as_bytes()), rmcp_decoded(line)) {
                (None, _) => {}
                (Some(fast), rmcp) => {
                    assert_same(&fast, &rmcp.unwrap_or_else(|e| panic!("taken, refused by rmcp ({e}): {line}")), line)
                }
            }
        }
        for line in lines[1..5].iter().chain(&lines[9..]) {
            assert!(tools_call(line.as_bytes()).is_none(), "{line}");
        }
    }

    #[test]
    fn lines_are_classified_as_rmcp_classifies_them() {
        let cases = [
            ("not json", "Ignored"),
            (r#"{"jsonrpc":"2.0","method":"$/lsp"}"#, "Message"),
            (r#"{"jsonrpc":"1.0","method":"$/lsp"}"#, "Ignored"),
            (r#"{"jsonrpc":"1.0","method":"notifications/unknown","id":3}"#, "Ignored"),
            (r#"{"jsonrpc":"1.0","method":"ping","id":3}"#, "Invalid"),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#, "Invalid"),
            (r#"{"jsonrpc":"2.0","id":1}"#, "Invalid"),
            ("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", "Message"),
        ];
        for (line, kind) in cases {
            let decoded = decode(line.as_bytes());
            assert!(format!("{decoded:?}").starts_with(kind), "{line}: {decoded:?}");
        }
    }

    /// A result carried as JSON text ([`STRUCTURED_JSON`]), its text the JSON ([`JSON_TEXT`]) or
    /// a rendering of it, is written as the line rmcp writes for the same result with the JSON
    /// as its structured content, byte for byte.
    #[test]
    fn tool_results_are_written_as_rmcp_writes_them() {
        let values = [
            json!({"fields": [{"name": "a\"b", "type": "text"}], "rows": [{"a\"b": "x\ny\u{1}é"}], "row_count": 1}),
            json!({"error": {"code": "INVALID_ARGUMENT", "message": "bad \\ input"}}),
            json!({}),
        ];
        let ids = [RequestId::Number(7), RequestId::String("id \"x\"".into())];
        for value in &values {
            for id in &ids {
                for (is_error, result_type) in [(Some(false), true), (Some(true), false), (None, false)] {
                    for rendering in [None, Some("| a\"b |\n|---|\n| x\\ |\n")] {
                        let result = |text: String, structured: Value| {
                            let mut result = CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)]);
                            result.structured_content = Some(structured);
                            result.is_error = is_error;
                            if !result_type {
                                result.result_type = None;
                            }
                            TxJsonRpcMessage::<RoleServer>::response(ServerResult::CallToolResult(result), id.clone())
                        };
                        let text = rendering.map_or_else(|| value.to_string(), str::to_owned);
                        let mut rmcp = serde_json::to_vec(&result(text, value.clone())).unwrap();
                        rmcp.push(b'\n');
                        let carried = json!({STRUCTURED_JSON: value.to_string()});
                        let ours = encode(&result(rendering.unwrap_or(JSON_TEXT).to_owned(), carried));
                        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(rmcp).unwrap());
                    }
                }
            }
        }
    }

    /// Anything else is serialized as rmcp serializes it: a text that only contains the marker
    /// is written as it is.
    #[test]
    fn other_results_are_serialized_whole() {
        let mut result = CallToolResult::success(vec![rmcp::model::ContentBlock::text(format!("{JSON_TEXT} "))]);
        result.structured_content = Some(json!({"a": 1}));
        let message =
            TxJsonRpcMessage::<RoleServer>::response(ServerResult::CallToolResult(result), RequestId::Number(1));
        let mut expected = serde_json::to_vec(&message).unwrap();
        expected.push(b'\n');
        assert_eq!(encode(&message), expected);
    }

    /// A write to a broken output fails and keeps nothing: answers to a client that went away
    /// do not pile up.
    #[tokio::test]
    async fn a_failed_write_keeps_nothing() {
        struct Broken;
        impl AsyncWrite for Broken {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut out = Out { write: Some(Broken), pending: Vec::new(), written: 0 };
        let failed = out.write_line(vec![b'x'; 1000]).await;
        assert_eq!(failed.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert!(out.pending.is_empty() && out.written == 0);
        // The output is given up: nothing is written after a line that may be torn.
        for _ in 0..3 {
            let failed = out.write_line(b"y\n".to_vec()).await;
            assert_eq!(failed.unwrap_err().kind(), std::io::ErrorKind::NotConnected);
            assert!(out.pending.is_empty() && out.write.is_none());
        }
    }

    /// A marker in a result of another shape (rmcp adds a block for an older client when the
    /// structured content is not an object) is replaced by the JSON, never written.
    #[test]
    fn the_marker_is_never_written() {
        let value = json!([1, "two"]);
        let mut result = CallToolResult::success(vec![
            rmcp::model::ContentBlock::text(value.to_string()),
            rmcp::model::ContentBlock::text(JSON_TEXT),
        ]);
        result.structured_content = Some(value.clone());
        let message =
            TxJsonRpcMessage::<RoleServer>::response(ServerResult::CallToolResult(result), RequestId::Number(1));
        let line = String::from_utf8(encode(&message)).unwrap();
        assert!(!line.contains("coldquery:"), "{line}");
        let written: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(written["result"]["content"][1]["text"], value.to_string(), "{line}");
        let mut bare = CallToolResult::success(vec![rmcp::model::ContentBlock::text(JSON_TEXT)]);
        bare.structured_content = None;
        let message =
            TxJsonRpcMessage::<RoleServer>::response(ServerResult::CallToolResult(bare), RequestId::Number(2));
        let line = String::from_utf8(encode(&message)).unwrap();
        assert!(!line.contains("coldquery:"), "{line}");
        // Carried as text in a result of another shape: the structured content is the JSON's
        // value, the marked text the JSON.
        let value = json!({"rows": [{"a": "\"x\""}]});
        let mut result = CallToolResult::success(vec![
            rmcp::model::ContentBlock::text("first"),
            rmcp::model::ContentBlock::text(JSON_TEXT),
        ]);
        result.structured_content = Some(json!({STRUCTURED_JSON: value.to_string()}));
        let message =
            TxJsonRpcMessage::<RoleServer>::response(ServerResult::CallToolResult(result), RequestId::Number(3));
        let line = String::from_utf8(encode(&message)).unwrap();
        assert!(!line.contains("coldquery:"), "{line}");
        let written: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(written["result"]["structuredContent"], value, "{line}");
        assert_eq!(written["result"]["content"][1]["text"], value.to_string(), "{line}");
    }

    /// `receive` over a pipe: lines split across reads and across a cancelled read, a CR, a
    /// byte order mark, empty and unparsable lines, a line over the limit, JSON that is not
    /// JSON-RPC (answered "Invalid request" once, even when the read that answers it is
    /// cancelled), then the end of input.
    #[tokio::test]
    async fn receive_reads_lines_as_rmcp_does() {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let (server_in, mut client_out) = tokio::io::duplex(64);
        let (server_out, client_in) = tokio::io::duplex(1 << 16);
        let mut lines = Lines::new(server_in, server_out);
        let ping = |id: u32| format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}");
        let id_of = |message: Option<RxJsonRpcMessage<RoleServer>>| match message {
            Some(JsonRpcMessage::Request(request)) => request.id,
            other => panic!("not a request: {other:?}"),
        };
        // Half a line, a cancelled receive, then the rest.
        let first = ping(1);
        client_out.write_all(&first.as_bytes()[..10]).await.unwrap();
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(20), lines.receive()).await;
        assert!(cancelled.is_err());
        client_out.write_all(&first.as_bytes()[10..]).await.unwrap();
        client_out.write_all(b"\r\n").await.unwrap();
        assert_eq!(id_of(lines.receive().await), RequestId::Number(1));
        let writing = tokio::spawn(async move {
            let mut input = Vec::new();
            input.extend_from_slice(b"\n\nnot json\n");
            input.extend_from_slice(&vec![b' '; MAX_LINE_BYTES + 10]);
            input.extend_from_slice(b"\n\xEF\xBB\xBF");
            input.extend_from_slice(ping(2).as_bytes());
            input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":3}\n");
            input.extend_from_slice(ping(4).as_bytes());
            input.extend_from_slice(b"\n");
            client_out.write_all(&input).await.unwrap();
        });
        assert_eq!(id_of(lines.receive().await), RequestId::Number(2));
        assert_eq!(id_of(lines.receive().await), RequestId::Number(4));
        writing.await.unwrap();
        assert!(lines.receive().await.is_none(), "the end of input ends the wire");
        lines.close().await.unwrap();
        let mut answers = tokio::io::BufReader::new(client_in).lines();
        let mut written = Vec::new();
        while let Some(line) = answers.next_line().await.unwrap() {
            written.push(line);
        }
        assert_eq!(written.len(), 1, "{written:?}");
        let answer: Value = serde_json::from_str(&written[0]).unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
        assert_eq!(answer["id"], Value::Null, "{answer}");
    }

    /// The "Invalid request" answer goes out once, even when the reads that write it are
    /// cancelled while the client is not reading.
    #[tokio::test]
    async fn an_invalid_line_is_answered_once_through_cancelled_reads() {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let (server_in, mut client_out) = tokio::io::duplex(1024);
        let (server_out, client_in) = tokio::io::duplex(8);
        let mut lines = Lines::new(server_in, server_out);
        client_out
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":3}\n{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        for _ in 0..2 {
            // The answer fills the 8-byte pipe and waits: the read is cancelled.
            let cancelled = tokio::time::timeout(std::time::Duration::from_millis(20), lines.receive()).await;
            assert!(cancelled.is_err());
        }
        let reading = tokio::spawn(async move {
            let mut answers = tokio::io::BufReader::new(client_in).lines();
            let mut written = Vec::new();
            while let Some(line) = answers.next_line().await.unwrap() {
                written.push(line);
            }
            written
        });
        match lines.receive().await {
            Some(JsonRpcMessage::Request(request)) => assert_eq!(request.id, RequestId::Number(4)),
            other => panic!("not the ping: {other:?}"),
        }
        drop(client_out);
        assert!(lines.receive().await.is_none());
        lines.close().await.unwrap();
        let written = reading.await.unwrap();
        assert_eq!(written.len(), 1, "{written:?}");
        assert!(written[0].contains("-32600"), "{written:?}");
    }

    /// A cancelled write is finished by the next one: lines never interleave.
    #[tokio::test]
    async fn a_cancelled_write_is_finished_before_the_next_line() {
        let (server, mut client) = tokio::io::duplex(16);
        let mut out = Out { write: Some(server), pending: Vec::new(), written: 0 };
        let first = vec![b'a'; 100];
        // The pipe takes 16 bytes and then blocks: the first line's write is cancelled.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(50), out.write_line(first)).await;
        assert!(cancelled.is_err());
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut all).await;
            all
        });
        out.write_line(b"b\n".to_vec()).await.unwrap();
        out.write = None;
        let all = reading.await.unwrap();
        let mut expected = vec![b'a'; 100];
        expected.extend_from_slice(b"b\n");
        assert_eq!(all, expected);
    }
}
