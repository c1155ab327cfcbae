package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
)

// ReportKinds are the reports Report makes (the funnel has its own use case).
var ReportKinds = []string{"retention", "ab", "lift", "heatmap", "senders", "anomalies", "channels"}

// ReportParams are a report's parameters, named as the CLI's flags (herald report
// KIND --flag) and the API's query parameters (GET /v1/reports/KIND?param=).
type ReportParams struct {
	Campaign  string        // ab, lift, channels (required), heatmap (optional)
	Campaigns []string      // retention by campaign: only these
	From, To  time.Time     // retention, senders, anomalies; zero: the default period ending tomorrow (UTC)
	Weeks     int           // retention: weeks after the first (default 8)
	By        string        // retention: week (default) or campaign
	Step      string        // ab: delivered, read (default), clicked, replied or converted
	Control   string        // ab: the control variant (default the first by name)
	Window    time.Duration // lift: how long after the send a conversion counts (default 7 days)
	History   int           // anomalies: days each day is compared with (default 14)
}

// defaultDays is each report's default period.
var defaultDays = map[string]int{"retention": 84, "senders": 7, "anomalies": 7}

// Report makes a report of kind from ClickHouse: analytics.RetentionReport (or
// CampaignRetentionReport by campaign), ABReport, LiftReport, HeatmapReport,
// []SenderHealth, AnomalyReport or ChannelsReport (channels: a campaign's funnel per
// channel with its fallbacks). A parameter refused is a *FieldError naming it as
// the API does (campaign, from, to, weeks, by, step, window, history).
func Report(ctx context.Context, conn driver.Conn, kind string, p ReportParams) (any, error) {
	if !slices.Contains(ReportKinds, kind) {
		return nil, fieldErr("kind", "report %q: want one of %v", kind, ReportKinds)
	}
	if days, ok := defaultDays[kind]; ok {
		to := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
		if p.To.IsZero() {
			p.To = to
		}
		if p.From.IsZero() {
			p.From = p.To.AddDate(0, 0, -days)
		}
		if !p.From.Before(p.To) {
			return nil, fieldErr("from", "%s is not before to %s", p.From.Format(time.DateOnly), p.To.Format(time.DateOnly))
		}
	}
	needCampaign := func() error {
		if p.Campaign == "" {
			return fieldErr("campaign", "give the campaign's id")
		}
		return nil
	}
	switch kind {
	case "retention":
		if p.Weeks == 0 {
			p.Weeks = 8
		}
		if p.Weeks < 1 || p.Weeks > 104 {
			return nil, fieldErr("weeks", "%d: want 1 to 104", p.Weeks)
		}
		switch p.By {
		case "", "week":
			if len(p.Campaigns) > 0 {
				return nil, fieldErr("campaign", "campaigns need by campaign")
			}
			return analytics.Retention(ctx, conn, p.From, p.To, p.Weeks)
		case "campaign":
			return analytics.RetentionByCampaign(ctx, conn, p.From, p.To, p.Weeks, p.Campaigns...)
		}
		return nil, fieldErr("by", "%q: want week or campaign", p.By)
	case "ab":
		if err := needCampaign(); err != nil {
			return nil, err
		}
		if p.Step == "" {
			p.Step = "read"
		}
		switch p.Step {
		case "delivered", "read", "clicked", "replied", "converted":
		default:
			return nil, fieldErr("step", "%q: want delivered, read, clicked, replied or converted", p.Step)
		}
		return analytics.ABTest(ctx, conn, p.Campaign, p.Step, p.Control)
	case "lift":
		if err := needCampaign(); err != nil {
			return nil, err
		}
		if p.Window == 0 {
			p.Window = analytics.DefaultLiftWindow
		}
		if p.Window < 0 {
			return nil, fieldErr("window", "%s: want a positive duration such as 168h", p.Window)
		}
		return analytics.Lift(ctx, conn, p.Campaign, p.Window)
	case "heatmap":
		return analytics.Heatmap(ctx, conn, p.Campaign)
	case "channels":
		if err := needCampaign(); err != nil {
			return nil, err
		}
		return analytics.ChannelsFunnel(ctx, conn, p.Campaign)
	case "senders":
		return analytics.SenderHealthReport(ctx, conn, p.From, p.To)
	default: // anomalies
		if p.History == 0 {
			p.History = 14
		}
		if p.History < 3 || p.History > 365 {
			return nil, fieldErr("history", "%d: want 3 to 365 days", p.History)
		}
		return analytics.Anomalies(ctx, conn, p.From, p.To, p.History)
	}
}

// reportAs is Report of a known type, for the CLI's printing.
func reportAs[T any](ctx context.Context, conn driver.Conn, kind string, p ReportParams) (T, error) {
	v, err := Report(ctx, conn, kind, p)
	if err != nil {
		var zero T
		return zero, err
	}
	r, ok := v.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("report %s: got %T", kind, v)
	}
	return r, nil
}

// RetentionReport is Report of retention by the week of the first message.
func RetentionReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.RetentionReport, error) {
	p.By = "week"
	return reportAs[analytics.RetentionReport](ctx, conn, "retention", p)
}

// CampaignRetentionReport is Report of retention by campaign.
func CampaignRetentionReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.CampaignRetentionReport, error) {
	p.By = "campaign"
	return reportAs[analytics.CampaignRetentionReport](ctx, conn, "retention", p)
}

// ABReport is Report of a campaign's A/B comparison.
func ABReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.ABReport, error) {
	return reportAs[analytics.ABReport](ctx, conn, "ab", p)
}

// LiftReport is Report of a campaign against its holdout.
func LiftReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.LiftReport, error) {
	return reportAs[analytics.LiftReport](ctx, conn, "lift", p)
}

// HeatmapReport is Report of the send-hour heatmap.
func HeatmapReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.HeatmapReport, error) {
	return reportAs[analytics.HeatmapReport](ctx, conn, "heatmap", p)
}

// SendersReport is Report of per-sender health.
func SendersReport(ctx context.Context, conn driver.Conn, p ReportParams) ([]analytics.SenderHealth, error) {
	return reportAs[[]analytics.SenderHealth](ctx, conn, "senders", p)
}

// AnomaliesReport is Report of the daily volume anomalies.
func AnomaliesReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.AnomalyReport, error) {
	return reportAs[analytics.AnomalyReport](ctx, conn, "anomalies", p)
}
