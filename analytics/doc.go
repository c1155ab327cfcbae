// Package analytics owns Herald's ClickHouse side: the schema and its versioned
// migrations, the sink that moves herald.events, herald.consent and herald.inbound from
// Kafka into ClickHouse in batches, and the reports computed there (campaign funnels,
// the consent ledger read back for audit).
//
// It does not produce events, decide policy or hold online state: the dispatcher, the
// webhook server and throttle write the Kafka topics, Redis is theirs. Kafka is the
// source of truth; ClickHouse is a copy that may hold a row more than once (at-least-once
// delivery, insert retries), so every figure here counts distinct event ids or distinct
// contacts and never raw rows.
//
// The SQL stays in the subset ClickHouse 18.16 (the Debian server used in development and
// tests) and 24.x (production) both accept; newer column types are chosen by the server
// version read at connect (see Migrate).
//
// Metrics (label table = events | consent_log | inbound):
//
//	herald_sink_rows_inserted_total{table}     rows ClickHouse accepted
//	herald_sink_batches_total{table}           batches inserted and committed
//	herald_sink_insert_errors_total{table}     failed insert attempts (each is retried)
//	herald_sink_decode_errors_total{table}     undecodable messages, skipped and committed
//	herald_sink_commit_errors_total{table}     offset commits Kafka refused (rows are redelivered)
//	herald_sink_pending_messages{table}        messages taken from Kafka, not yet inserted and committed
//	herald_sink_batch_seconds{table}           time to insert one batch, retries included
package analytics
