// Package event defines the kchat event envelope and the registry of event
// payloads that services exchange over Kafka.
//
// Every record on a kchat topic is a CloudEvents 1.0 envelope in JSON
// structured mode: the envelope attributes and the payload travel together in
// the record value, so a consumer never has to trust headers to interpret the
// bytes. [Headers] duplicates a few attributes into Kafka headers only so that
// routers and log tooling can filter without parsing the value.
//
// The JSON Schemas in schemas/events at the repository root are the
// language-neutral contract; the tests in this package fail when the Go types
// and those schemas drift apart, and when a schema change would break readers
// of already released events.
//
// Decoding is split in two steps on purpose. [Decode] checks only the
// envelope, which is all a relay or dead-letter handler needs; [DecodePayload]
// and [As] then interpret data for the consumers that understand the type.
// Payload decoding ignores unknown fields so that a producer may add optional
// fields before every consumer has been upgraded.
package event
