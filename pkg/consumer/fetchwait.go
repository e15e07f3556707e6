package consumer

import "time"

// ReaderMaxWait returns the kafka-go ReaderConfig.MaxWait under which a fetch of a
// partition with nothing new waits brokerWait at the broker.
//
// A kafka-go Reader uses MaxWait twice: as the read deadline of each fetch, and, less a
// margin for the round trip, as the wait it asks of the broker. The margin is a quarter
// of MaxWait below one second and one second above it. With MaxWait 250 ms the broker
// answered an empty fetch after 187 ms and the answer had 62 ms to come back: on a busy
// machine it often took longer, and the Reader took the late answer for a broken
// connection, closed it and dialed again, with a TLS handshake and a SCRAM login each
// time (about 13 times a second across the services under the chaos suite's 200 msg/s).
// Asking for brokerWait plus a second keeps the broker's wait and gives the answer that
// second.
func ReaderMaxWait(brokerWait time.Duration) time.Duration {
	return brokerWait + time.Second
}
