package store

// SendCheckSQL lets tests read the plan of the batched send check.
const SendCheckSQL = sendCheckSQL
