package sandbox

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/templates"
)

// maxRequestBody bounds a request body.
const maxRequestBody = 1 << 20

func (s *Sandbox) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /"+sms.APIVersion+"/Accounts/{sid}/Messages.json", s.handleMessages)
	m.HandleFunc("GET /_sandbox/records", s.handleRecords)
	m.HandleFunc("GET /_sandbox/stats", s.handleStats)
	m.HandleFunc("POST /_sandbox/inbound", s.handleInbound)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{status: http.StatusNotFound, code: 20404,
			message: fmt.Sprintf("The requested resource %s was not found", r.URL.Path)})
	})
	s.mux = m
}

// apiError is a refusal in Twilio's error shape.
type apiError struct {
	status     int
	code       int
	message    string
	retryAfter time.Duration
}

func errBadRequest(code int, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

var (
	errAuth = &apiError{status: http.StatusUnauthorized, code: 20003, message: "Authenticate"}
	errBusy = &apiError{status: http.StatusTooManyRequests, code: 20429, message: "Too Many Requests", retryAfter: time.Second}
)

// errorBody is Twilio's error JSON.
type errorBody struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	b, _ := json.Marshal(errorBody{Code: e.code, Message: e.message, MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(e.code), Status: e.status})
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if e.retryAfter > 0 {
		h["Retry-After"] = []string{strconv.Itoa(int((e.retryAfter + time.Second - 1) / time.Second))}
	}
	if e.code == 20003 {
		h["Www-Authenticate"] = []string{`Basic realm="Twilio API"`}
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

func (s *Sandbox) fail(w http.ResponseWriter, e *apiError) {
	s.reject(e.code)
	writeError(w, e)
}

// authorized checks basic auth: the user is the path's account SID (and the configured
// one, if any), the password the auth token (if configured).
func (s *Sandbox) authorized(r *http.Request, sid string) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || user != sid || (s.cfg.AccountSID != "" && sid != s.cfg.AccountSID) {
		return false
	}
	return s.cfg.AuthToken == "" || subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.AuthToken)) == 1
}

// message is the Message resource JSON.
type message struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

func (s *Sandbox) handleMessages(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if lim := s.cfg.MaxConcurrentRequests; lim > 0 {
		if s.inflight.Add(1) > int64(lim) {
			s.inflight.Add(-1)
			s.fail(w, errBusy)
			return
		}
		defer s.inflight.Add(-1)
	}
	// Read the body first: the server notices a client going away only once it is read.
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			s.bufs.Put(buf)
		}
	}()
	_, readErr := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var form url.Values
	if readErr == nil {
		form, readErr = url.ParseQuery(buf.String())
	}
	if f := s.cfg.Fault; f != nil {
		if ft := f(form.Get("To")); ft.Status != 0 {
			s.reject(ft.Code)
			if ft.Code != 0 {
				writeError(w, &apiError{status: ft.Status, code: ft.Code, message: "Injected fault", retryAfter: ft.RetryAfter})
			} else {
				if ft.RetryAfter > 0 {
					w.Header().Set("Retry-After", strconv.Itoa(int(ft.RetryAfter/time.Second)))
				}
				http.Error(w, "<html><body>injected server error</body></html>", ft.Status)
			}
			return
		}
	}
	if d := s.cfg.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	sid := r.PathValue("sid")
	if !s.authorized(r, sid) {
		s.fail(w, errAuth)
		return
	}
	if readErr != nil {
		s.fail(w, errBadRequest(21601, "The request body is not a valid form: %v", readErr))
		return
	}
	rec, aerr := s.accept(sid, form)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}

	resp := message{
		AccountSID:      rec.AccountSID,
		APIVersion:      sms.APIVersion,
		Body:            rec.Body,
		DateCreated:     rec.AcceptedAt.UTC().Format(time.RFC1123Z),
		DateUpdated:     rec.AcceptedAt.UTC().Format(time.RFC1123Z),
		Direction:       "outbound-api",
		NumMedia:        "0",
		NumSegments:     strconv.Itoa(rec.Segments),
		PriceUnit:       "USD",
		SID:             rec.SID,
		Status:          sms.StatusQueued,
		SubresourceURIs: map[string]string{"media": "/" + sms.APIVersion + "/Accounts/" + rec.AccountSID + "/Messages/" + rec.SID + "/Media.json"},
		To:              rec.To,
		URI:             "/" + sms.APIVersion + "/Accounts/" + rec.AccountSID + "/Messages/" + rec.SID + ".json",
	}
	if rec.From != "" {
		resp.From = &rec.From
	}
	if rec.MessagingServiceSID != "" {
		// Through a service, Twilio picks the number later: accepted, no segments yet.
		resp.MessagingServiceSID = &rec.MessagingServiceSID
		resp.Status, resp.NumSegments = sms.StatusAccepted, "0"
	}
	b, _ := json.Marshal(resp)
	w.Header()["Content-Type"] = []string{"application/json"}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

// accept checks a send in Twilio's order and, when accepted, records it, reserves its
// place in the sender's queue and schedules its callbacks.
func (s *Sandbox) accept(account string, form url.Values) (Record, *apiError) {
	var cb string
	to := form.Get("To")
	from := form.Get("From")
	service := form.Get("MessagingServiceSid")
	body := form.Get("Body")
	if to == "" {
		return Record{}, errBadRequest(21604, "A 'To' phone number is required.")
	}
	num, digits, ok := parsePhone(to)
	if !ok {
		return Record{}, errBadRequest(21211, "Invalid 'To' Phone Number: %s", to)
	}
	ref := from
	if service != "" {
		ref, from = service, ""
	}
	if ref == "" {
		return Record{}, errBadRequest(21603, "A 'From' phone number is required.")
	}
	typ, owned := s.senderType(ref)
	if !owned {
		return Record{}, errBadRequest(21606, "The From phone number %s is not a valid, SMS-capable inbound phone number or short code for your account.", ref)
	}
	if body == "" {
		return Record{}, errBadRequest(21602, "Message body is required.")
	}
	if !utf8.ValidString(body) {
		return Record{}, errBadRequest(21602, "Message body is not valid UTF-8.")
	}
	if utf8.RuneCountInString(body) > templates.MaxSMSChars {
		return Record{}, errBadRequest(21617, "The concatenated message body exceeds the 1600 character limit.")
	}
	validity := 0
	if v := form.Get("ValidityPeriod"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > int(sms.MaxValidityPeriod/time.Second) {
			return Record{}, errBadRequest(21624, "Invalid validity period value: %q (an integer from 1 to 36000 seconds)", v)
		}
		validity = n
	}
	callback := form.Get("StatusCallback")
	if callback != "" {
		u, err := url.Parse(callback)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Record{}, errBadRequest(21609, "Invalid StatusCallback url: %q", callback)
		}
		cb = u.Query().Get("cb")
	}
	if len(s.countries) > 0 && !s.countries[phonenumbers.GetRegionCodeForNumber(num)] {
		return Record{}, errBadRequest(21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s.", to)
	}
	if s.stopped(ref, digits) || Unsubscribed(to, s.cfg.UnsubscribedRate) {
		return Record{}, errBadRequest(21610, "Attempt to send to unsubscribed recipient")
	}
	if Landline(to, s.cfg.LandlineRate) {
		return Record{}, errBadRequest(21614, "'To' number %s is not a valid mobile number", to)
	}

	now := s.now()
	segs, enc := smsSegments(body)
	rec := Record{
		AccountSID: account, From: from, SenderType: typ, To: to, Body: body, Segments: segs, Encoding: enc,
		StatusCallback: callback, CallbackData: cb, ValidityPeriod: validity, AcceptedAt: now,
		Final: sms.StatusDelivered,
	}
	if service != "" {
		rec.MessagingServiceSID = service
	}
	limit := s.cfg.MaxQueueTime
	if validity > 0 {
		limit = min(limit, time.Duration(validity)*time.Second)
	}
	var expireIn time.Duration
	sentAt, wait, fits := s.reserve(ref, segs, s.rate(typ), now, limit)
	switch {
	case fits:
		rec.SentAt = sentAt
		if bad, code := Undeliverable(to, s.cfg.UndeliverableRate); bad {
			rec.Final, rec.ErrorCode = sms.StatusUndelivered, code
		} else if s.filtered(body) {
			rec.Final, rec.ErrorCode = sms.StatusUndelivered, 30007
		}
	case wait <= s.cfg.MaxQueueTime:
		// Accepted, then expired in the queue: never sent.
		rec.Final, rec.ErrorCode = sms.StatusFailed, 30036
		expireIn = time.Duration(validity) * time.Second
	case service != "":
		// Through a Messaging Service an overflowing queue fails after creation.
		rec.Final, rec.ErrorCode = sms.StatusFailed, 30001
	default:
		return Record{}, errBadRequest(21611, "This 'From' number has exceeded the maximum number of queued messages")
	}
	seq := s.seq.Add(1)
	rec.SID = s.sidFor(seq)
	s.recMu.Lock()
	s.records = append(s.records, rec)
	s.recMu.Unlock()
	s.accepted.Add(1)
	s.segments.Add(int64(segs))
	s.schedule(&rec, seq, expireIn)
	return rec, nil
}

func (s *Sandbox) filtered(body string) bool {
	if len(s.cfg.FilterWords) == 0 {
		return false
	}
	lb := strings.ToLower(body)
	for _, w := range s.cfg.FilterWords {
		if w != "" && strings.Contains(lb, strings.ToLower(w)) {
			return true
		}
	}
	return false
}

func (s *Sandbox) handleRecords(w http.ResponseWriter, r *http.Request) {
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	writeJSON(w, s.recordsPage(offset, limit))
}

func (s *Sandbox) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.Stats())
}

func (s *Sandbox) handleInbound(w http.ResponseWriter, r *http.Request) {
	var in struct {
		From string `json:"from"`
		To   string `json:"to"`
		Body string `json:"body"`
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody)); err != nil {
		writeError(w, errBadRequest(21601, "reading the request body: %v", err))
		return
	}
	if err := json.Unmarshal(buf.Bytes(), &in); err != nil {
		writeError(w, errBadRequest(21601, "want {\"from\",\"to\",\"body\"}: %v", err))
		return
	}
	sid, err := s.Inbound(r.Context(), in.From, in.To, in.Body)
	if err != nil {
		writeError(w, errBadRequest(21601, "%v", err))
		return
	}
	writeJSON(w, map[string]string{"sid": sid})
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = []string{"application/json"}
	_, _ = w.Write(b)
}
