package protocol

// Every error code and close code the gateway puts on the wire lives in this file, so the
// protocol document (docs/protocol.md) and the code can be compared in one place.

// Error codes carried by `error` frames and by REST error bodies ({code, message}).
const (
	CodeBadJSON            = "bad_json"            // the frame is not a JSON object
	CodeUnknownType        = "unknown_type"        // the frame's type is not one we know
	CodeBadRequest         = "bad_request"         // a field is missing or malformed
	CodeTooLarge           = "too_large"           // text over -max-text-bytes, a file over the upload limit
	CodeUnsupportedType    = "unsupported_type"    // an upload whose sniffed type is not allowed
	CodeForbidden          = "forbidden"           // not a member of the room
	CodeNotFound           = "not_found"           // unknown room or user
	CodeUnauthorized       = "unauthorized"        // the connection has not authenticated yet
	CodeInvalidToken       = "invalid_token"       // a forged, expired or wrong-kind token
	CodeInvalidCredentials = "invalid_credentials" // wrong username or password
	CodeUsernameTaken      = "username_taken"      // registration with an existing username
	CodeConflict           = "conflict"            // e.g. a room id that already exists
	CodeUnavailable        = "unavailable"         // Kafka or PostgreSQL failed; safe to retry
	CodeRateLimited        = "rate_limited"        // over a rate limit; retry_after_ms says when to retry
	CodeSlow               = "slow"                // the connection could not keep up (sent before close 4008)
	CodeInternal           = "internal"            // a bug; the request may be retried
)

// CloseCode is a WebSocket close status. 4000-4999 are application codes: 4000-4099 are
// terminal for this connection but a client may reconnect; see docs/protocol.md.
type CloseCode int

// Close codes used by the gateway.
const (
	CloseNormal         CloseCode = 1000 // `quit`, or the client closed
	CloseMessageTooBig  CloseCode = 1009 // a frame over -read-limit
	CloseServiceRestart CloseCode = 1012 // graceful shutdown: reconnect (to another gateway)
	CloseInternal       CloseCode = 1011 // unexpected server error
	ClosePolicy         CloseCode = 1008 // policy violation: far over the rate limits for a sustained time
	CloseIdle           CloseCode = 4000 // no frame from the client for -idle-timeout
	CloseUnauthorized   CloseCode = 4001 // bad token, or no auth within the auth timeout
	CloseSlow           CloseCode = 4008 // the client could not keep up even in catch-up mode
)

// Close reasons, sent with the close codes above (WebSocket limits reasons to 123 bytes).
const (
	ReasonIdle         = "idle"
	ReasonUnauthorized = "unauthorized"
	ReasonSlow         = "slow"
	ReasonShutdown     = "shutdown"
	ReasonBye          = "bye"
	ReasonAbuse        = "rate limit abuse"
)
