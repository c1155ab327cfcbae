package sandbox

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-dev/herald/channels/whatsapp/graph"
)

// maxRequestBody bounds a request body.
const maxRequestBody = 1 << 20

func (s *Sandbox) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /{version}/{id}/messages", s.handleMessages)
	m.HandleFunc("POST /{version}/{id}/message_templates", s.handleCreateTemplate)
	m.HandleFunc("GET /{version}/{id}/message_templates", s.handleListTemplates)
	m.HandleFunc("GET /_sandbox/records", s.handleRecords)
	m.HandleFunc("GET /_sandbox/stats", s.handleStats)
	m.HandleFunc("POST /_sandbox/inbound", s.handleInbound)
	m.HandleFunc("POST /_sandbox/preference", s.handlePreference)
	m.HandleFunc("POST /_sandbox/outage", s.handleOutage)
	m.HandleFunc("GET /_sandbox/outage", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Outage()) })
	m.HandleFunc("DELETE /_sandbox/outage", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearOutage()
		writeJSON(w, map[string]bool{"success": true})
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeGraphError(w, &graphError{status: http.StatusBadRequest, code: 100,
			message: fmt.Sprintf("Unsupported %s request.", strings.ToLower(r.Method)),
			details: fmt.Sprintf("Unknown path %s %s", r.Method, r.URL.Path)})
	})
	s.mux = m
}

// graphError is a refusal in Graph's error shape.
type graphError struct {
	status  int
	code    int
	message string
	details string
}

func (e *graphError) Error() string { return fmt.Sprintf("(#%d) %s: %s", e.code, e.message, e.details) }

func errParam(format string, args ...any) *graphError {
	return &graphError{status: http.StatusBadRequest, code: 100, message: "(#100) Invalid parameter", details: fmt.Sprintf(format, args...)}
}

func errMissing(format string, args ...any) *graphError {
	return &graphError{status: http.StatusBadRequest, code: 131008, message: "(#131008) Required parameter is missing", details: fmt.Sprintf(format, args...)}
}

var (
	errToken = &graphError{status: http.StatusUnauthorized, code: 190,
		message: "Invalid OAuth access token - Cannot parse access token", details: "The access token is missing or not accepted by this sandbox."}
	errThroughput = &graphError{status: http.StatusTooManyRequests, code: 130429,
		message: "(#130429) Rate limit hit", details: "Cloud API message throughput has been reached."}
	errPair = &graphError{status: http.StatusBadRequest, code: 131056,
		message: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
		details: "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time."}
	errWindow = &graphError{status: http.StatusBadRequest, code: 131047,
		message: "(#131047) Re-engagement message",
		details: "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}
)

func writeGraphError(w http.ResponseWriter, e *graphError) {
	body := graph.ErrorBody{Error: graph.ErrorObject{
		Message:   e.message,
		Type:      "OAuthException",
		Code:      e.code,
		ErrorData: &graph.ErrorData{MessagingProduct: "whatsapp", Details: e.details},
		FBTraceID: "Asandbox" + strconv.FormatInt(time.Now().UnixNano()%1e12, 36),
	}}
	b, _ := json.Marshal(body)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if e.code == 190 {
		h["Www-Authenticate"] = []string{`OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"`}
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

func (s *Sandbox) fail(w http.ResponseWriter, e *graphError) {
	s.reject(e.code)
	writeGraphError(w, e)
}

func (s *Sandbox) authorized(r *http.Request) bool {
	if s.token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(s.token)) == 1
}

// validVersion accepts Graph versions like v21.0.
func validVersion(v string) bool {
	if len(v) < 4 || v[0] != 'v' {
		return false
	}
	major, minor, ok := strings.Cut(v[1:], ".")
	return ok && isDigits(major) && isDigits(minor) && len(major) <= 3 && len(minor) <= 3
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) error {
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody))
	return err
}

func (s *Sandbox) handleMessages(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	// Read the body first: the server notices a client going away only once it is read.
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	readErr := readBody(w, r, buf)
	defer func() {
		if buf.Cap() <= 64<<10 {
			s.bufs.Put(buf)
		}
	}()
	if f := s.cfg.Fault; f != nil {
		if status, code := f(); status != 0 {
			s.reject(code)
			if code != 0 {
				writeGraphError(w, &graphError{status: status, code: code, message: "Injected fault", details: "sandbox fault injection"})
			} else {
				http.Error(w, "injected server error", status)
			}
			return
		}
	}
	if s.duringOutage(w, r) {
		return
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
	if !s.authorized(r) {
		s.fail(w, errToken)
		return
	}
	if v := r.PathValue("version"); !validVersion(v) {
		s.fail(w, &graphError{status: http.StatusBadRequest, code: 2500, message: "Unknown path components: /" + v,
			details: "The version must look like v21.0."})
		return
	}
	pnid := r.PathValue("id")
	now := s.now()
	if !s.limiter(pnid).AllowN(now, 1) {
		s.fail(w, errThroughput)
		return
	}

	var (
		req    graph.SendRequest
		digits string
		gerr   *graphError
	)
	if readErr != nil {
		gerr = errParam("reading the request body: %v", readErr)
	} else {
		req, digits, gerr = decodeSend(buf.Bytes())
	}
	if gerr != nil {
		s.fail(w, gerr)
		return
	}

	rec := Record{
		PhoneNumberID: pnid,
		To:            req.To,
		WaID:          digits,
		Type:          req.Type,
		CallbackData:  req.BizOpaqueCallbackData,
		AcceptedAt:    now,
	}
	price := graph.Pricing{PricingModel: "PMP"}
	window := s.windowOpen(pnid, digits, now)
	switch req.Type {
	case "text":
		if !window {
			s.fail(w, errWindow)
			return
		}
		rec.Body = req.Text.Body
		price.Type, price.Category = "free_customer_service", "service"
	case "template":
		e, ok := s.template(req.Template.Name, req.Template.Language.Code)
		if !ok {
			s.fail(w, &graphError{status: http.StatusNotFound, code: 132001,
				message: "(#132001) Template name does not exist in the translation",
				details: fmt.Sprintf("template name (%s) does not exist in %s", req.Template.Name, req.Template.Language.Code)})
			return
		}
		params, gerr := matchParams(&e.t, req.Template.Components)
		if gerr != nil {
			s.fail(w, gerr)
			return
		}
		rec.TemplateName, rec.Language, rec.Params = e.t.Name, e.t.Language, params
		if e.t.Body != "" {
			rec.Body = render(e.t.Body, e.t.BodyParams, params)
		}
		price.Category = strings.ToLower(e.t.Category)
		if price.Category == "utility" && window {
			price.Type = "free_customer_service"
		} else {
			price.Billable, price.Type = true, "regular"
		}
	}
	if !s.pairAllow(pnid, digits, now) {
		s.fail(w, errPair)
		return
	}

	seq := s.seq.Add(1)
	rec.MessageID = s.idFor(seq)
	rec.Final = graph.StatusDelivered
	switch {
	case Undeliverable(digits, s.cfg.UndeliverableRate):
		rec.Final, rec.ErrorCode = graph.StatusFailed, 131026
	case price.Category == "marketing" && s.marketingStopped(digits):
		rec.Final, rec.ErrorCode = graph.StatusFailed, 131050
	case WillRead(digits, s.cfg.ReadRate):
		rec.Final = graph.StatusRead
	}
	s.recMu.Lock()
	s.records = append(s.records, rec)
	s.recMu.Unlock()
	s.accepted.Add(1)
	s.schedule(&rec, &price, seq)

	out := make([]byte, 0, 192)
	out = append(out, `{"messaging_product":"whatsapp","contacts":[{"input":`...)
	out = strconv.AppendQuote(out, req.To)
	out = append(out, `,"wa_id":"`...)
	out = append(out, digits...)
	out = append(out, `"}],"messages":[{"id":"`...)
	out = append(out, rec.MessageID...)
	out = append(out, `","message_status":"accepted"}]}`...)
	w.Header()["Content-Type"] = []string{"application/json"}
	_, _ = w.Write(out)
}

// decodeSend decodes and checks a send request independent of state: the shape, the
// recipient, the type, the text length and the template's presence.
func decodeSend(body []byte) (req graph.SendRequest, digits string, gerr *graphError) {
	if err := json.Unmarshal(body, &req); err != nil {
		return req, "", errParam("the request body is not a valid send request: %v", err)
	}
	if req.MessagingProduct != "whatsapp" {
		return req, "", errParam("messaging_product must be \"whatsapp\", got %q", req.MessagingProduct)
	}
	if req.RecipientType != "" && req.RecipientType != "individual" {
		return req, "", errParam("recipient_type must be \"individual\", got %q", req.RecipientType)
	}
	d, ok := waID(req.To)
	if !ok {
		return req, "", errParam("to %q is not a phone number: want 8-15 digits with the country code and an optional leading '+'", req.To)
	}
	if len(req.BizOpaqueCallbackData) > 512 {
		return req, "", errParam("biz_opaque_callback_data is longer than 512 characters")
	}
	if req.Type == "" {
		req.Type = "text"
	}
	switch req.Type {
	case "text":
		if req.Text == nil {
			return req, "", errMissing("text is required for type text")
		}
		if n := utf8.RuneCountInString(req.Text.Body); n < 1 || n > 4096 {
			return req, "", errParam("text.body must be 1-4096 characters, got %d", n)
		}
	case "template":
		if req.Template == nil {
			return req, "", errMissing("template is required for type template")
		}
		if req.Template.Name == "" || req.Template.Language.Code == "" {
			return req, "", errMissing("template.name and template.language.code are required")
		}
	default:
		return req, "", &graphError{status: http.StatusBadRequest, code: 131051, message: "(#131051) Unsupported message type",
			details: fmt.Sprintf("message type %q is not supported by the sandbox (text, template)", req.Type)}
	}
	return req, d, nil
}

// matchParams checks the body parameters of a template send against the approved
// template and returns their values in the template's order.
func matchParams(t *ApprovedTemplate, comps []graph.Component) ([]string, *graphError) {
	var ps []graph.Parameter
	for _, c := range comps {
		if strings.EqualFold(c.Type, "body") {
			ps = append(ps, c.Parameters...)
		}
	}
	for i, p := range ps {
		if p.Type != "text" {
			return nil, &graphError{status: http.StatusBadRequest, code: 132012,
				message: "(#132012) Parameter format does not match format in the created template",
				details: fmt.Sprintf("body parameter %d has type %q; the template expects text", i+1, p.Type)}
		}
	}
	mismatch := func(format string, args ...any) *graphError {
		return &graphError{status: http.StatusBadRequest, code: 132000,
			message: "(#132000) Number of parameters does not match the expected number of params",
			details: fmt.Sprintf(format, args...)}
	}
	want := len(t.BodyParams) + t.PositionalParams
	if len(ps) != want {
		return nil, mismatch("body: number of localizable_params (%d) does not match the expected number of params (%d)", len(ps), want)
	}
	if len(ps) == 0 {
		return nil, nil
	}
	vals := make([]string, len(ps))
	if t.BodyParams == nil {
		for i, p := range ps {
			if p.ParameterName != "" {
				return nil, mismatch("body: parameter %d is named %q but the template is positional", i+1, p.ParameterName)
			}
			vals[i] = p.Text
		}
		return vals, nil
	}
	filled := make([]bool, len(ps))
	for _, p := range ps {
		i := indexOf(t.BodyParams, p.ParameterName)
		switch {
		case p.ParameterName == "":
			return nil, mismatch("body: the template expects named parameters %v", t.BodyParams)
		case i < 0:
			return nil, mismatch("body: unknown parameter_name %q; the template expects %v", p.ParameterName, t.BodyParams)
		case filled[i]:
			return nil, mismatch("body: parameter_name %q given twice", p.ParameterName)
		}
		filled[i], vals[i] = true, p.Text
	}
	return vals, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// templateCreate is the body of POST /{version}/{waba-id}/message_templates.
type templateCreate struct {
	Name       string `json:"name"`
	Language   string `json:"language"`
	Category   string `json:"category"`
	Components []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"components"`
}

func (s *Sandbox) handleCreateTemplate(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeGraphError(w, errToken)
		return
	}
	if !validVersion(r.PathValue("version")) {
		writeGraphError(w, &graphError{status: http.StatusBadRequest, code: 2500, message: "Unknown path components", details: "The version must look like v21.0."})
		return
	}
	var buf bytes.Buffer
	if err := readBody(w, r, &buf); err != nil {
		writeGraphError(w, errParam("reading the request body: %v", err))
		return
	}
	t, gerr := decodeTemplate(buf.Bytes())
	if gerr != nil {
		writeGraphError(w, gerr)
		return
	}
	s.AddTemplate(t)
	e, _ := s.template(t.Name, t.Language)
	writeJSON(w, map[string]string{"id": e.id, "status": "APPROVED", "category": e.t.Category})
}

func decodeTemplate(b []byte) (ApprovedTemplate, *graphError) {
	var tc templateCreate
	if err := json.Unmarshal(b, &tc); err != nil {
		return ApprovedTemplate{}, errParam("the request body is not a valid template: %v", err)
	}
	if !validTemplateName(tc.Name) {
		return ApprovedTemplate{}, errParam("name %q: use 1-512 lowercase letters, digits and underscores", tc.Name)
	}
	if tc.Language == "" {
		return ApprovedTemplate{}, errParam("language is required (e.g. en_US)")
	}
	cat := strings.ToUpper(tc.Category)
	switch cat {
	case "MARKETING", "UTILITY", "AUTHENTICATION":
	default:
		return ApprovedTemplate{}, errParam("category %q: want MARKETING, UTILITY or AUTHENTICATION", tc.Category)
	}
	t := ApprovedTemplate{Name: tc.Name, Language: tc.Language, Category: cat}
	for _, c := range tc.Components {
		if strings.EqualFold(c.Type, "BODY") {
			t.Body = c.Text
		}
	}
	if t.Body == "" {
		return ApprovedTemplate{}, errParam("a BODY component with text is required")
	}
	if utf8.RuneCountInString(t.Body) > 1024 {
		return ApprovedTemplate{}, errParam("the body is longer than 1024 characters")
	}
	named, positional, err := placeholders(t.Body)
	if err != nil {
		return ApprovedTemplate{}, errParam("body: %v", err)
	}
	t.BodyParams, t.PositionalParams = named, positional
	return t, nil
}

func validTemplateName(n string) bool {
	if n == "" || len(n) > 512 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (s *Sandbox) handleListTemplates(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeGraphError(w, errToken)
		return
	}
	type comp struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type item struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		Language   string `json:"language"`
		Status     string `json:"status"`
		Category   string `json:"category"`
		Components []comp `json:"components"`
	}
	s.tmplMu.RLock()
	data := make([]item, 0, len(s.templates))
	for _, e := range s.templates {
		it := item{ID: e.id, Name: e.t.Name, Language: e.t.Language, Status: "APPROVED", Category: e.t.Category, Components: []comp{}}
		if e.t.Body != "" {
			it.Components = append(it.Components, comp{Type: "BODY", Text: e.t.Body})
		}
		data = append(data, it)
	}
	s.tmplMu.RUnlock()
	writeJSON(w, map[string]any{"data": data})
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
		PhoneNumberID string `json:"phone_number_id"`
		From          string `json:"from"`
		Text          string `json:"text"`
	}
	simulate(w, r, &in, `{"phone_number_id","from","text"}`, func() error {
		return s.Inbound(r.Context(), in.PhoneNumberID, in.From, in.Text)
	})
}

// handlePreference is Preference over HTTP: {"phone_number_id","from","value":"stop"|"resume"}.
func (s *Sandbox) handlePreference(w http.ResponseWriter, r *http.Request) {
	var in struct {
		PhoneNumberID string `json:"phone_number_id"`
		From          string `json:"from"`
		Value         string `json:"value"`
	}
	simulate(w, r, &in, `{"phone_number_id","from","value"}`, func() error {
		return s.Preference(r.Context(), in.PhoneNumberID, in.From, in.Value)
	})
}

// simulate serves a /_sandbox/ request: the JSON body (shaped as want says) into in,
// then act, answered {"success":true} or a Graph error.
func simulate(w http.ResponseWriter, r *http.Request, in any, want string, act func() error) {
	var buf bytes.Buffer
	if err := readBody(w, r, &buf); err != nil {
		writeGraphError(w, errParam("reading the request body: %v", err))
		return
	}
	if err := json.Unmarshal(buf.Bytes(), in); err != nil {
		writeGraphError(w, errParam("want %s: %v", want, err))
		return
	}
	if err := act(); err != nil {
		writeGraphError(w, errParam("%v", err))
		return
	}
	writeJSON(w, map[string]bool{"success": true})
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

// placeholders parses the {{name}} / {{1}} placeholders of a template body: named ones in
// order of first use, or the count of positional ones, which must be {{1}}..{{n}}.
func placeholders(body string) (named []string, positional int, err error) {
	seenPos := map[int]bool{}
	err = scanPlaceholders(body, func(p string) error {
		if isDigits(p) {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 100 {
				return fmt.Errorf("placeholder {{%s}}: positions run from 1 to 100", p)
			}
			seenPos[n] = true
			positional = max(positional, n)
			return nil
		}
		if !validParamName(p) {
			return fmt.Errorf("placeholder {{%s}}: use lowercase letters, digits and underscores, starting with a letter or underscore", p)
		}
		if indexOf(named, p) < 0 {
			named = append(named, p)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if positional > 0 && named != nil {
		return nil, 0, errors.New("mixes named and positional placeholders")
	}
	for i := 1; i <= positional; i++ {
		if !seenPos[i] {
			return nil, 0, fmt.Errorf("positional placeholders must be {{1}} to {{%d}} without gaps; {{%d}} is missing", positional, i)
		}
	}
	return named, positional, nil
}

func validParamName(p string) bool {
	if p == "" || p[0] >= '0' && p[0] <= '9' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// scanPlaceholders calls f with the trimmed inside of every {{...}} in body.
func scanPlaceholders(body string, f func(string) error) error {
	for rest := body; ; {
		i := strings.Index(rest, "{{")
		if i < 0 {
			return nil
		}
		rest = rest[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return errors.New("unclosed {{")
		}
		if err := f(strings.TrimSpace(rest[:j])); err != nil {
			return err
		}
		rest = rest[j+2:]
	}
}

// render fills a validated template body with values (named in names' order, or
// positional).
func render(body string, names []string, values []string) string {
	var b strings.Builder
	b.Grow(len(body) + 16*len(values))
	for rest := body; ; {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		p := strings.TrimSpace(rest[i+2 : i+2+j])
		k := -1
		if names == nil {
			if n, err := strconv.Atoi(p); err == nil {
				k = n - 1
			}
		} else {
			k = indexOf(names, p)
		}
		if k >= 0 && k < len(values) {
			b.WriteString(values[k])
		} else {
			b.WriteString(rest[i : i+2+j+2])
		}
		rest = rest[i+2+j+2:]
	}
}
