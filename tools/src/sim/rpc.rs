//! JSON-RPC 2.0 envelopes and Deribit error objects.

use serde_json::Value;

/// Deribit / JSON-RPC error codes the simulator answers with.
pub mod code {
    /// The request is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a JSON-RPC request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Missing or malformed parameter.
    pub const INVALID_PARAMS: i64 = -32602;
    /// No order with that id or label.
    pub const ORDER_NOT_FOUND: i64 = 10004;
    /// Request rate limit exceeded.
    pub const TOO_MANY_REQUESTS: i64 = 10028;
    /// Price is not a multiple of the instrument's tick size.
    pub const PRICE_WRONG_TICK: i64 = 10043;
    /// Order rejected for another reason (reduce-only that would increase the position).
    pub const OTHER_REJECT: i64 = 11030;
    /// The order is no longer open.
    pub const NOT_OPEN_ORDER: i64 = 11044;
    /// Post-only order would have taken liquidity.
    pub const POST_ONLY_REJECT: i64 = 11054;
    /// Wrong client id, secret, signature or refresh token.
    pub const INVALID_CREDENTIALS: i64 = 13004;
    /// Private method without a valid (unexpired) authorization.
    pub const UNAUTHORIZED: i64 = 13009;
    /// Raw subscriptions need an authorized connection.
    pub const RAW_SUBSCRIPTIONS_NOT_AVAILABLE: i64 = 13778;
}

/// A JSON-RPC error object as Deribit sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Numeric code.
    pub code: i64,
    /// Short message (`invalid_credentials`, `Invalid params`, ...).
    pub message: &'static str,
    /// Optional details, e.g. `{"param":"amount","reason":"..."}`.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i64, message: &'static str) -> RpcError {
        RpcError {
            code,
            message,
            data: None,
        }
    }

    /// `-32602 Invalid params` naming the parameter and the reason.
    pub fn invalid_param(param: &str, reason: impl Into<String>) -> RpcError {
        RpcError {
            code: code::INVALID_PARAMS,
            message: "Invalid params",
            data: Some(serde_json::json!({"param": param, "reason": reason.into()})),
        }
    }

    /// Attaches a `reason` to the error's data.
    pub fn with_reason(mut self, reason: impl Into<String>) -> RpcError {
        self.data = Some(serde_json::json!({"reason": reason.into()}));
        self
    }

    /// `-32700 Parse error`.
    pub fn parse_error() -> RpcError {
        RpcError::new(code::PARSE_ERROR, "Parse error")
    }
    /// `-32601 Method not found`.
    pub fn method_not_found() -> RpcError {
        RpcError::new(code::METHOD_NOT_FOUND, "Method not found")
    }
    /// `13009 unauthorized`.
    pub fn unauthorized() -> RpcError {
        RpcError::new(code::UNAUTHORIZED, "unauthorized")
    }
    /// `13004 invalid_credentials`.
    pub fn invalid_credentials() -> RpcError {
        RpcError::new(code::INVALID_CREDENTIALS, "invalid_credentials")
    }
    /// `10028 too_many_requests`.
    pub fn too_many_requests() -> RpcError {
        RpcError::new(code::TOO_MANY_REQUESTS, "too_many_requests")
    }
    /// `10004 order_not_found`.
    pub fn order_not_found() -> RpcError {
        RpcError::new(code::ORDER_NOT_FOUND, "order_not_found")
    }
}

/// Time stamps of one request/response pair, microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the request was read.
    pub us_in: u64,
    /// When the response was written.
    pub us_out: u64,
}

/// Serializes a response: `jsonrpc`, `id`, `result` or `error`, `usIn`, `usOut`, `usDiff`,
/// `testnet`.
pub fn response(id: &Value, outcome: Result<Value, RpcError>, t: Timing, testnet: bool) -> String {
    let mut obj = serde_json::Map::with_capacity(7);
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    obj.insert("id".into(), id.clone());
    match outcome {
        Ok(result) => {
            obj.insert("result".into(), result);
        }
        Err(e) => {
            let mut err = serde_json::Map::new();
            err.insert("message".into(), Value::from(e.message));
            err.insert("code".into(), Value::from(e.code));
            if let Some(d) = e.data {
                err.insert("data".into(), d);
            }
            obj.insert("error".into(), Value::Object(err));
        }
    }
    obj.insert("usIn".into(), Value::from(t.us_in));
    obj.insert("usOut".into(), Value::from(t.us_out));
    obj.insert(
        "usDiff".into(),
        Value::from(t.us_out.saturating_sub(t.us_in)),
    );
    obj.insert("testnet".into(), Value::from(testnet));
    Value::Object(obj).to_string()
}

/// Serializes a subscription notification.
pub fn notification(channel: &str, data: &Value) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"channel": channel, "data": data},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_carries_deribit_envelope_fields() {
        let s = response(
            &Value::from(7),
            Err(RpcError::invalid_param("amount", "must be positive")),
            Timing {
                us_in: 10,
                us_out: 15,
            },
            true,
        );
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["param"], "amount");
        assert_eq!(v["usDiff"], 5);
        assert_eq!(v["testnet"], true);
        assert!(v.get("result").is_none());
    }
}
