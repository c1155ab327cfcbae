package api

import (
	"net/http"

	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/journeys"
)

// routeTable lists every operation of the API. Its paths and permissions are the
// spec's (openapi.yaml, x-permission): TestRoutesMatchSpec holds them equal.
func (a *API) routeTable() []route {
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	return []route{
		{get, "/v1/openapi.json", "", a.openAPI},
		{post, "/v1/session", "", a.login},
		{get, "/v1/session", "", a.getSession},
		{del, "/v1/session", "", a.logout},

		{get, "/v1/contacts/{id}", apikeys.ContactsRead, a.getContact},
		{put, "/v1/contacts/{id}", apikeys.ContactsWrite, a.putContact},
		{del, "/v1/contacts/{id}", apikeys.ContactsErase, a.eraseContact},
		{get, "/v1/contacts", apikeys.ContactsRead, a.findContact},
		{post, "/v1/contacts", apikeys.ContactsWrite, a.postContact},
		{post, "/v1/contacts:bulk", apikeys.ContactsWrite, a.bulkContacts},
		{post, importsPath, apikeys.ContactsWrite, a.createImport},
		{get, "/v1/imports/{id}", apikeys.ContactsRead, a.getImport},
		{get, "/v1/imports/{id}/rejects", apikeys.ContactsRead, a.importRejects},
		{get, "/v1/contacts/{id}/consent", apikeys.ConsentRead, a.getConsent},
		{post, "/v1/consent", apikeys.ConsentWrite, a.postConsent},

		{get, "/v1/campaigns", apikeys.CampaignsRead, a.listCampaigns},
		{post, "/v1/campaigns", apikeys.CampaignsWrite, a.createCampaign},
		{get, "/v1/campaigns/{id}", apikeys.CampaignsRead, a.getCampaign},
		{post, "/v1/campaigns/{id}/launch", apikeys.CampaignsLaunch, a.launchCampaign},
		{post, "/v1/campaigns/{id}/pause", apikeys.CampaignsWrite, a.transition("pause")},
		{post, "/v1/campaigns/{id}/resume", apikeys.CampaignsWrite, a.transition("resume")},
		{post, "/v1/campaigns/{id}/cancel", apikeys.CampaignsWrite, a.transition("cancel")},
		{get, "/v1/campaigns/{id}/progress", apikeys.CampaignsRead, a.progress},
		{get, "/v1/campaigns/{id}/deliveries", apikeys.ReportsRead, a.deliveries},
		{get, "/v1/campaigns/{id}/timeline", apikeys.ReportsRead, a.timeline},

		{get, "/v1/schedules", apikeys.CampaignsRead, a.listSchedules},
		{post, "/v1/schedules", apikeys.CampaignsWrite, a.createSchedule},
		{get, "/v1/schedules/{id}", apikeys.CampaignsRead, a.getSchedule},
		{del, "/v1/schedules/{id}", apikeys.CampaignsWrite, a.deleteSchedule},
		{post, "/v1/schedules/{id}/pause", apikeys.CampaignsWrite, a.scheduleTransition("pause")},
		{post, "/v1/schedules/{id}/resume", apikeys.CampaignsLaunch, a.scheduleTransition("resume")},
		{get, "/v1/schedules/{id}/runs", apikeys.CampaignsRead, a.listScheduleRuns},

		{get, "/v1/reports/funnel", apikeys.ReportsRead, a.funnel},
		{get, "/v1/reports/retention", apikeys.ReportsRead, a.report("retention")},
		{get, "/v1/reports/ab", apikeys.ReportsRead, a.report("ab")},
		{get, "/v1/reports/lift", apikeys.ReportsRead, a.report("lift")},
		{get, "/v1/reports/heatmap", apikeys.ReportsRead, a.report("heatmap")},
		{get, "/v1/reports/senders", apikeys.ReportsRead, a.report("senders")},
		{get, "/v1/reports/anomalies", apikeys.ReportsRead, a.report("anomalies")},
		{get, "/v1/reports/channels", apikeys.ReportsRead, a.report("channels")},
		{get, "/v1/senders", apikeys.SendersRead, a.listSenders},
		{get, "/v1/templates", apikeys.TemplatesRead, a.listTemplates},
		{post, "/v1/conversions", apikeys.ContactsWrite, a.postConversions},
		{get, "/v1/audit/api", apikeys.AuditRead, a.listAPICalls},
		{get, "/v1/audit/campaigns/{id}", apikeys.AuditRead, a.auditCampaign},
		{get, "/v1/audit/contacts/{id}", apikeys.AuditRead, a.auditContact},
		{get, "/v1/audit/export", apikeys.AuditRead, a.auditExport},

		{get, "/v1/tags", apikeys.ContactsRead, a.listTags},
		{post, "/v1/tags/{tag}:add", apikeys.ContactsWrite, a.tagContacts(true)},
		{post, "/v1/tags/{tag}:remove", apikeys.ContactsWrite, a.tagContacts(false)},
		{get, "/v1/segments/count", apikeys.ContactsRead, a.segmentCount},
		{get, "/v1/segments/preview", apikeys.ContactsRead, a.segmentPreview},
		{post, "/v1/templates", apikeys.TemplatesWrite, a.createTemplate},
		{post, "/v1/templates:validate", apikeys.TemplatesRead, a.validateTemplate},
		{get, "/v1/templates/{name}", apikeys.TemplatesRead, a.getTemplate},
		{post, "/v1/templates/{name}/preview", apikeys.TemplatesRead, a.previewTemplate},
		{post, "/v1/senders", apikeys.SendersWrite, a.createSender},
		{get, "/v1/senders/{id}/governor", apikeys.SendersRead, a.senderGovernor},
		{post, "/v1/senders/{id}/hold", apikeys.SendersWrite, a.holdSender},
		{post, "/v1/senders/{id}/resume", apikeys.SendersWrite, a.resumeSender},
		{post, "/v1/campaigns/{id}/dry-run", apikeys.CampaignsRead, a.dryRun},

		{get, "/v1/journeys", apikeys.JourneysRead, a.listJourneys},
		{post, "/v1/journeys", apikeys.JourneysWrite, a.addJourney},
		{get, "/v1/journeys/{id}", apikeys.JourneysRead, a.getJourney},
		{post, "/v1/journeys/{id}/pause", apikeys.JourneysWrite, a.journeyState(journeys.Paused)},
		{post, "/v1/journeys/{id}/resume", apikeys.JourneysWrite, a.journeyState(journeys.Active)},
		{post, "/v1/journeys/{id}/archive", apikeys.JourneysWrite, a.journeyState(journeys.Archived)},
		{get, "/v1/reports/journey", apikeys.ReportsRead, a.journeyReport},
		{post, "/v1/events", apikeys.EventsWrite, a.postEvent},

		{get, "/v1/webhooks", apikeys.WebhooksRead, a.listWebhooks},
		{post, "/v1/webhooks", apikeys.WebhooksWrite, a.createWebhook},
		{get, "/v1/webhooks/{id}", apikeys.WebhooksRead, a.getWebhook},
		{del, "/v1/webhooks/{id}", apikeys.WebhooksWrite, a.deleteWebhook},
		{post, "/v1/webhooks/{id}/replay", apikeys.WebhooksWrite, a.replayWebhook},
		{post, "/v1/webhooks/{id}/rotate-secret", apikeys.WebhooksWrite, a.rotateWebhookSecret},
		{post, "/v1/webhooks/{id}/pause", apikeys.WebhooksWrite, a.setWebhookActive(false)},
		{post, "/v1/webhooks/{id}/resume", apikeys.WebhooksWrite, a.setWebhookActive(true)},
		{get, "/v1/webhooks/{id}/deliveries", apikeys.WebhooksRead, a.listDeliveries},
	}
}
