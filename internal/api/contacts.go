package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/throttle"
)

// contactRequest is a contact as a client writes it (POST /v1/contacts, PUT
// /v1/contacts/{id}, each of POST /v1/contacts:bulk): the keys the API prints, less id.
type contactRequest struct {
	Phone      string            `json:"phone"`
	Email      string            `json:"email"`
	Name       string            `json:"name"`
	Country    string            `json:"country"`
	Locale     string            `json:"locale"`
	TimeZone   string            `json:"timezone"`
	Tags       []string          `json:"tags"`
	Attributes map[string]string `json:"attributes"`
	// Channel identities.
	TelegramChatID string `json:"telegram_chat_id"`
	LineUserID     string `json:"line_user_id"`
}

func (r contactRequest) contact() segments.Contact {
	return segments.Contact{Phone: r.Phone, Email: r.Email, Name: r.Name, Country: r.Country, Locale: r.Locale,
		TimeZone: r.TimeZone, Tags: r.Tags, Attrs: r.Attributes, TelegramChatID: r.TelegramChatID, LineUserID: r.LineUserID}
}

// maxBulk is the most contacts one bulk upsert takes.
const maxBulk = 5000

func contactID(c *call) (uint32, error) {
	v := c.r.PathValue("id")
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return 0, paramProblem("id", "a contact id is a positive integer")
	}
	c.resource = v
	return uint32(n), nil
}

func (a *API) getContact(c *call) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	ct, err := app.GetContact(c.r.Context(), a.cfg.Components, id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, ct)
}

// findContact looks a contact up by one identity: ?phone=, ?email=, ?telegram_chat_id=
// or ?line_user_id=. The answer is a list of the one contact, or empty.
func (a *API) findContact(c *call) error {
	q := c.r.URL.Query()
	var given []string
	ref := ""
	for _, k := range []string{"phone", "email", "telegram_chat_id", "line_user_id"} {
		v := q.Get(k)
		if v == "" {
			continue
		}
		given = append(given, k)
		switch k {
		case "telegram_chat_id":
			v = "telegram:" + v
		case "line_user_id":
			v = "line:" + v
		}
		ref = v
	}
	if len(given) != 1 {
		return paramProblem("phone", "give exactly one of phone, email, telegram_chat_id or line_user_id")
	}
	items := []segments.Contact{}
	id, err := app.FindContact(c.r.Context(), a.cfg.Components, ref)
	switch {
	case errors.Is(err, segments.ErrNotFound):
	case err != nil:
		return err
	default:
		ct, err := app.GetContact(c.r.Context(), a.cfg.Components, id)
		if err != nil && !errors.Is(err, segments.ErrNotFound) {
			return err
		}
		if err == nil {
			items = append(items, ct)
		}
	}
	return c.json(http.StatusOK, map[string]any{"items": items})
}

// eraseContact erases a contact (?purpose= repeatable: the purposes revoked, default
// marketing and utility): the ledger's tombstone first, then its profile and identities.
func (a *API) eraseContact(c *call) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	purposes := c.r.URL.Query()["purpose"]
	for _, p := range purposes {
		if p != "marketing" && p != "utility" {
			return paramProblem("purpose", "want marketing or utility (repeat it for both; default both)")
		}
	}
	er, err := app.EraseContactID(c.r.Context(), a.cfg.Components, id, purposes)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, er)
}

func (a *API) putContact(c *call) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	var req contactRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	ct, err := app.UpdateContact(c.r.Context(), a.cfg.Components, id, req.contact())
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, ct)
}

func (a *API) postContact(c *call) error {
	var req contactRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	ct, created, err := app.UpsertContact(c.r.Context(), a.cfg.Components, req.contact())
	if err != nil {
		return err
	}
	c.resource = strconv.FormatUint(uint64(ct.ID), 10)
	if !created {
		return c.json(http.StatusOK, ct)
	}
	c.w.Header().Set("Location", "/v1/contacts/"+c.resource)
	return c.json(http.StatusCreated, ct)
}

type bulkRequest struct {
	Contacts []contactRequest `json:"contacts"`
}

func (a *API) bulkContacts(c *call) error {
	var req bulkRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Contacts) == 0 || len(req.Contacts) > maxBulk {
		return problem("validation", "give 1 to 5000 contacts", FieldProblem{Pointer: "/contacts", Detail: "want 1 to 5000 contacts"})
	}
	cs := make([]segments.Contact, len(req.Contacts))
	for i, r := range req.Contacts {
		cs[i] = r.contact()
	}
	res, err := app.UpsertContacts(c.r.Context(), a.cfg.Components, cs)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, res)
}

func (a *API) getConsent(c *call) error {
	id, err := contactID(c)
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	channels, purposes := app.Channels, []string{"marketing", "utility"}
	if v := q.Get("channel"); v != "" {
		channels = strings.Split(v, ",")
	}
	if v := q.Get("purpose"); v != "" {
		purposes = strings.Split(v, ",")
	}
	if _, err := app.GetContact(c.r.Context(), a.cfg.Components, id); err != nil {
		return err
	}
	rows, err := app.ContactConsent(c.r.Context(), a.cfg.Components, id, channels, purposes)
	if fe, ok := err.(*app.FieldError); ok {
		return paramProblem(fe.Field, fe.Err.Error())
	}
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, page[app.ConsentRow]{Items: rows})
}

// consentRequest is a grant or revoke (POST /v1/consent): the contact by id, phone or
// email, and what the ledger records.
type consentRequest struct {
	ContactID      uint32     `json:"contact_id"`
	Phone          string     `json:"phone"`
	Email          string     `json:"email"`
	Action         string     `json:"action"`
	Channel        string     `json:"channel"`
	Purpose        string     `json:"purpose"`
	Source         string     `json:"source"`
	Wording        string     `json:"wording"`
	WordingVersion string     `json:"wording_version"`
	IP             string     `json:"ip"`
	UserAgent      string     `json:"user_agent"`
	Proof          string     `json:"proof"`
	At             *time.Time `json:"at"`
}

// consentResult is the answer of POST /v1/consent: the ledger records written, none
// when the contact already had that state.
type consentResult struct {
	Records []events.ConsentRecord `json:"records"`
}

func (a *API) postConsent(c *call) error {
	req := consentRequest{Channel: "whatsapp", Purpose: "marketing", Source: "api"}
	if err := c.decode(&req); err != nil {
		return err
	}
	ch := throttle.Change{Channel: req.Channel, Purpose: req.Purpose, Action: events.ConsentAction(req.Action), Source: req.Source,
		Wording: req.Wording, WordingVersion: req.WordingVersion, IP: req.IP, UserAgent: req.UserAgent, Proof: req.Proof,
		Actor: "api key " + c.key.Name + " (" + c.key.ID + ")"}
	if req.At != nil {
		ch.Time = *req.At
	}
	recs, err := app.ChangeConsent(c.r.Context(), a.cfg.Components, app.ContactRef{ID: req.ContactID, Phone: req.Phone, Email: req.Email}, ch)
	if err != nil {
		return err
	}
	if len(recs) > 0 {
		c.resource = strconv.FormatUint(uint64(recs[0].ContactID), 10)
	}
	return c.json(http.StatusOK, consentResult{Records: recs})
}
