package app

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/segments"
)

// TrackConversion records an order of a contact (by phone), attributed to the last
// campaign that sent to it within window (herald track conversion; POST
// /v1/conversions). The event id derives from the order, so recording it twice counts
// once. An unknown phone wraps segments.ErrNotFound; a malformed conversion
// server.ErrBadConversion.
func TrackConversion(ctx context.Context, d *Deps, comp *Components, conn driver.Conn, req server.ConversionRequest, window time.Duration) (server.ConversionResponse, error) {
	if window <= 0 {
		window = analytics.DefaultAttributionWindow
	}
	return server.Track(ctx, server.TrackConfig{Contacts: comp.Contacts, Attribution: analytics.NewAttributor(conn, window),
		Events: d.Writer(d.Topics.Events)}, req)
}

// ConversionReject is a conversion of a batch that was not recorded: its index, the
// field at fault and why.
type ConversionReject struct {
	Index  int    `json:"index"`
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ConversionsResult is what TrackConversions recorded: one result per recorded
// conversion (with its index), the rejects by index.
type ConversionsResult struct {
	Received int                 `json:"received"`
	Recorded int                 `json:"recorded"`
	Rejected int                 `json:"rejected"`
	Results  []IndexedConversion `json:"results"`
	Rejects  []ConversionReject  `json:"rejects"`
}

// IndexedConversion is one recorded conversion of a batch.
type IndexedConversion struct {
	Index int `json:"index"`
	server.ConversionResponse
}

// TrackConversions records a batch of conversions one by one: an unknown phone or a
// malformed conversion is a reject, the others are recorded; an error of Kafka or
// ClickHouse ends the batch (a retry records the rest and counts the recorded once).
func TrackConversions(ctx context.Context, d *Deps, comp *Components, conn driver.Conn, reqs []server.ConversionRequest, window time.Duration) (ConversionsResult, error) {
	res := ConversionsResult{Received: len(reqs), Results: []IndexedConversion{}, Rejects: []ConversionReject{}}
	for i, req := range reqs {
		r, err := TrackConversion(ctx, d, comp, conn, req, window)
		switch {
		case errors.Is(err, segments.ErrNotFound):
			res.Rejects = append(res.Rejects, ConversionReject{Index: i, Field: "phone", Detail: err.Error()})
		case errors.Is(err, server.ErrBadConversion):
			field := "phone"
			for _, f := range []string{"order_id", "value", "currency", "ts", "time", "contact"} {
				if strings.Contains(err.Error(), "\n"+f+":") || strings.Contains(err.Error(), "\n"+f+" ") {
					field = f
					break
				}
			}
			if field == "time" {
				field = "ts"
			}
			if field == "contact" {
				field = "phone"
			}
			res.Rejects = append(res.Rejects, ConversionReject{Index: i, Field: field, Detail: strings.TrimPrefix(err.Error(), server.ErrBadConversion.Error()+"\n")})
		case err != nil:
			return res, err
		default:
			res.Results = append(res.Results, IndexedConversion{Index: i, ConversionResponse: r})
		}
	}
	res.Recorded, res.Rejected = len(res.Results), len(res.Rejects)
	return res, nil
}
