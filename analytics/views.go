package analytics

// SQL views for analysts (migration 0005; v_message_outcomes replaced by migration
// 0010, which adds the deferral columns), so funnels can be queried without Herald.
// They count like the reports: distinct contacts, the furthest step of each contact
// (a read implies delivered; a click, reply or conversion implies read), so duplicated
// and out-of-order events change nothing. Filter on campaign_id in the outer query.

// viewMessageOutcomes: one row per (campaign, contact) with what became of the message.
// Migration 0005's version; migration 0010 replaces it with viewMessageOutcomesDeferred.
const viewMessageOutcomes = `CREATE VIEW IF NOT EXISTS v_message_outcomes AS
SELECT campaign_id, contact_id,
` + outcomeColumns + `
FROM events
WHERE campaign_id != ''
GROUP BY campaign_id, contact_id`

// outcomeColumns are the columns of v_message_outcomes that both its versions have.
const outcomeColumns = `    anyIf(variant, variant != '') AS variant,
    anyIf(sender_id, sender_id != '') AS sender_id,
    anyIf(country, country != '') AS country,
    max(multiIf(kind IN ('read', 'clicked', 'replied', 'converted'), 4, kind = 'delivered', 3, kind = 'sent', 2, kind = 'queued', 1, 0)) AS stage,
    max(kind = 'skipped') AS skipped,
    max(kind = 'failed') AS failed,
    max(kind = 'clicked') AS clicked,
    max(kind = 'replied') AS replied,
    max(kind = 'converted') AS converted,
    max(kind = 'opted_out') AS opted_out,
    minIf(ts, kind = 'sent') AS sent_at`

// viewFunnel: one row per campaign, distinct contacts per step.
const viewFunnel = `CREATE VIEW IF NOT EXISTS v_funnel AS
SELECT campaign_id,
    countIf(stage >= 1) AS queued, countIf(stage >= 2) AS sent, countIf(stage >= 3) AS delivered,
    countIf(stage >= 4) AS read, countIf(clicked = 1) AS clicked, countIf(replied = 1) AS replied,
    countIf(converted = 1) AS converted, countIf(skipped = 1 AND stage < 2) AS skipped,
    countIf(failed = 1) AS failed, countIf(opted_out = 1) AS opted_out
FROM v_message_outcomes
GROUP BY campaign_id`

// viewFunnelByVariant: one row per campaign and variant.
const viewFunnelByVariant = `CREATE VIEW IF NOT EXISTS v_funnel_by_variant AS
SELECT campaign_id, variant,
    countIf(stage >= 1) AS queued, countIf(stage >= 2) AS sent, countIf(stage >= 3) AS delivered,
    countIf(stage >= 4) AS read, countIf(clicked = 1) AS clicked, countIf(replied = 1) AS replied,
    countIf(converted = 1) AS converted
FROM v_message_outcomes
GROUP BY campaign_id, variant`

// viewSentConsent: every distinct sent message with the consent record it names
// (empty consent_* columns when consent_log does not hold it).
const viewSentConsent = `CREATE VIEW IF NOT EXISTS v_sent_consent AS
SELECT event_id, campaign_id, contact_id, sender_id, channel, template, variant, ts, ts_ms, consent_ref,
    consent_action, consent_purpose, consent_ts_ms, consent_hash
FROM (
    SELECT DISTINCT event_id, campaign_id, contact_id, sender_id, channel, template, variant, ts, ts_ms, consent_ref
    FROM events WHERE kind = 'sent'
)
ANY LEFT JOIN (
    SELECT id AS consent_ref, any(action) AS consent_action, any(purpose) AS consent_purpose,
        any(ts_ms) AS consent_ts_ms, any(hash) AS consent_hash
    FROM consent_log GROUP BY id
) USING consent_ref`

// viewMessageOutcomesDeferred is v_message_outcomes (migration 0010) with what policy
// deferrals did to the message, so an analyst can see why a message went out late or
// not yet (deferred = 1 AND stage < 2: still waiting):
//
//	deferred         1 when the job was deferred at least once (a "deferred" event)
//	deferrals        how many distinct deferrals (a redelivered deferral counts once)
//	deferred_reason  the reason code of the latest deferral (pair_rate, quiet_hours,
//	                 sender_cap, …); empty when never deferred
//	deferred_until   when the latest deferral made the job due again (events.until);
//	                 1970-01-01 00:00:00 when never deferred
//
// "Latest" is by event time, then event id, like the funnel's reasons and codes, so
// duplicated and out-of-order events change nothing.
const viewMessageOutcomesDeferred = `CREATE VIEW IF NOT EXISTS v_message_outcomes AS
SELECT campaign_id, contact_id,
` + outcomeColumns + `,
    max(kind = 'deferred') AS deferred,
    uniqExactIf(event_id, kind = 'deferred') AS deferrals,
    argMaxIf(reason, (ts_ms, event_id), kind = 'deferred') AS deferred_reason,
    argMaxIf(until, (ts_ms, event_id), kind = 'deferred') AS deferred_until
FROM events
WHERE campaign_id != ''
GROUP BY campaign_id, contact_id`
