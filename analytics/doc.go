// Package analytics owns Herald's ClickHouse side: the schema and its versioned
// migrations, the sink that moves herald.events, herald.consent and herald.inbound from
// Kafka into ClickHouse in batches, and the reports computed there: campaign funnels
// (Funnel, FunnelBy variant/sender/country), cohort retention by first-contact week
// (Retention) or by campaign (RetentionByCampaign), A/B comparison with a
// two-proportion z-test (ABTest), holdout lift with revenue (Lift), the send-hour
// heatmap in recipients' local time (Heatmap), per-sender health (SenderHealthReport),
// daily-volume anomalies beyond 2σ (Anomalies), a campaign's funnel per channel with its
// fallbacks, who was reached only through one and the time to reach (ChannelsFunnel,
// over the fallback events of issue 20), last-touch attribution of conversions
// (Attributor), and the compliance audit (AuditCampaign, AuditContact, ExportSent) over
// the consent ledger (ConsentLedger). AuditContact also tells, per campaign, why a
// contact did or did not get the message: skipped (reason), deferred (reason and the
// time the job was due again, events.until), failed (provider code), sent, delivered,
// read.
//
// The consent ledger's signed checkpoints (throttle.Checkpoint) live in ledger_checkpoints
// (one row each) and ledger_heads (the chain heads each lists), created by migration 0011
// and written by the scheduler's leader through CheckpointStore. AuditLedger verifies
// every checkpoint (signature, digest, chain of checkpoints) and every contact's chain
// in consent_log against them; AuditContact says how one contact's chain stands.
//
// The /v1 HTTP API's audit records (events.APICall, one per mutating call) arrive on
// herald.audit and land in api_audit (migration 0012); ListAPICalls pages through them,
// newest first.
//
// Migration 0005 creates views for analysts: v_message_outcomes, v_funnel,
// v_funnel_by_variant, v_sent_consent (see views.go for their columns); migration 0010
// adds to v_message_outcomes what deferrals did to each message: deferred (0/1),
// deferrals (distinct deferrals), deferred_reason and deferred_until (of the latest).
// Migration 0007 creates the contact_weeks pre-aggregate (see preagg.go): one row per
// contact, kept for analysts' SQL; the reports no longer read it. Migration 0009
// creates the cohort pre-aggregates the reports read (see cohorts.go): bitmaps of
// contacts (dense ids, 64 per row) sent to and engaged per week (week_contacts), sent
// to per campaign (campaign_contacts), each campaign's first send (campaign_starts),
// and the sends by time (sent_times). Each is fed by a materialized view (<table>_mv)
// on every insert into events and backfilled from the events already stored when the
// migration runs; all hold idempotent aggregates (bit or, min) or sets, so duplicates
// and arrival order change nothing, and a cohort report reads a row per 64 contacts
// whether or not ClickHouse has merged the parts yet.
//
// The audit needs to tell free-form messages from templates: until the event contract
// carries the message type, a sent event with Reason = FreeFormReason ("free_form") is
// free-form and must fall inside the 24h window; every other sent event is audited as a
// template. A converted event carries its order id, value and currency (migration 0008
// adds the columns order_id, value, currency).
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
