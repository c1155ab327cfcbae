package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/graph"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/server"
	"github.com/herald-dev/herald/recurring"
	"github.com/herald-dev/herald/segments"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
	"github.com/herald-dev/herald/webhooks"
)

// out is the type of f's first result: the registry names what a command prints by the
// function that makes it, so a renamed or changed result type follows on its own.
func out(f any) reflect.Type { return reflect.TypeOf(f).Out(0) }

func typ[T any]() reflect.Type { return reflect.TypeFor[T]() }

// jsonOutputs is every type a command prints with --output json (and audit export's
// JSON lines), by command. A command that prints something new adds it here.
var jsonOutputs = []struct {
	cmd string
	t   reflect.Type
}{
	{"contacts import", out(app.ImportContacts)},
	{"contacts erase", out((*segments.Store).EraseContact)},
	{"contacts show", out(app.GetContact)},
	{"segments count", typ[segmentCount]()},
	{"segments preview", out((*segments.Store).Preview)},
	{"tags add, tags remove", out(app.TagContacts)},
	{"tags list", out((*segments.Store).TagCounts)},
	{"tags compute", out((*segments.Store).ComputeRules)},
	{"templates add", out(app.SaveTemplate)},
	{"templates list", out((*templates.Store).List)},
	{"templates show", out(app.ShowTemplate)},
	{"templates validate", out(app.ValidateTemplate)},
	{"templates preview", typ[app.TemplatePreview]()},
	{"campaigns create", out((*dispatcher.Campaigns).Create)},
	{"campaigns dry-run", out(app.DryRun)},
	{"campaigns launch, status, pause, resume, cancel", out((*dispatcher.Campaigns).Status)},
	{"campaigns list", out((*dispatcher.Campaigns).List)},
	{"schedules create, show, pause, resume", out((*recurring.Store).Get)},
	{"schedules list", out((*recurring.Store).List)},
	{"schedules delete", typ[scheduleDeleted]()},
	{"schedules runs", out(app.ScheduleRuns)},
	{"consent grant, consent revoke", out((*throttle.Ledger).Apply)},
	{"consent show", out(app.ContactConsent)},
	{"consent rebuild", out((*throttle.Ledger).Rebuild)},
	{"senders add", typ[dispatcher.Sender]()},
	{"senders list", out((*dispatcher.Senders).List)},
	{"senders show, hold, resume", out(app.SenderGovernor)},
	{"report funnel", out(analytics.Funnel)},
	{"telegram link", out(app.TelegramLink)},
	{"report funnel --by", out(analytics.FunnelBy)},
	{"report retention", out(analytics.Retention)},
	{"report retention --by campaign", out(analytics.RetentionByCampaign)},
	{"report ab", out(analytics.ABTest)},
	{"report lift", out(analytics.Lift)},
	{"report heatmap", out(analytics.Heatmap)},
	{"report senders", out(analytics.SenderHealthReport)},
	{"report anomalies", out(analytics.Anomalies)},
	{"report channels", out(analytics.ChannelsFunnel)},
	{"audit campaign", out(analytics.AuditCampaign)},
	{"audit contact", out(analytics.AuditContact)},
	{"audit export", typ[analytics.SentRecord]()},
	{"audit ledger", out(analytics.AuditLedger)},
	{"ledger checkpoint", out((*throttle.Checkpointer).Checkpoint)},
	{"track conversion", out(server.Track)},
	{"migrate", typ[migrateResult]()},
	{"keys create", out((*apikeys.Store).Create)},
	{"keys list", out((*apikeys.Store).List)},
	{"keys revoke", out((*apikeys.Store).Revoke)},
	{"webhooks create", out((*webhooks.Store).Create)},
	{"webhooks list", out((*webhooks.Store).List)},
	{"webhooks replay", typ[replayResult]()},
	{"webhooks deliveries", out((*webhooks.Store).Deliveries)},
	{"demo", typ[app.DemoResult]()},
	{"bench segments", out(segments.RunBench)},
	{"bench e2e", out(app.BenchE2E)},
	{"bench e2e --channel email", out(app.BenchE2EEmail)},
	{"bench webhooks", out(app.BenchWebhooks)},
	{"bench throttle", typ[ThrottleBenchResult]()},
}

// wireTypes are printed as they travel or are stored, and their keys are a contract
// with other readers: the walk does not go into them (the printed keys are still
// checked by TestJSONOutputs).
var wireTypes = map[reflect.Type]string{
	reflect.TypeFor[events.ConsentRecord](): "the consent ledger's record as herald.consent and consent_log hold it (contact, ts)",
	reflect.TypeFor[graph.SendRequest]():    "the Cloud API's request body, Meta's keys",
	reflect.TypeFor[graph.Template]():       "the Cloud API's template object, Meta's keys",
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// keyProblem says what is wrong with a key, if anything: keys are snake_case; a
// duration is in milliseconds and its key says so (eta_ms, latency_p99_ms,
// cpu_ms_per_message), a rate is per second and its key says per_second; numeric is
// whether the value is a number.
func keyProblem(key string, numeric bool) string {
	if !snakeCase.MatchString(key) {
		return fmt.Sprintf("key %q is not snake_case", key)
	}
	parts := strings.Split(key, "_")
	for i, p := range parts {
		switch p {
		case "ns", "us", "s", "sec", "secs", "seconds":
			return fmt.Sprintf("key %q: durations are in milliseconds (_ms), rates per second (_per_second)", key)
		case "second":
			if i == 0 || parts[i-1] != "per" && !(parts[i-1] == "cpu" && i > 1 && parts[i-2] == "per") {
				return fmt.Sprintf("key %q: durations are in milliseconds (_ms), rates per second (_per_second)", key)
			}
		}
	}
	switch parts[len(parts)-1] {
	case "hours", "minutes":
		if numeric {
			return fmt.Sprintf("key %q: a duration is a number of milliseconds (_ms)", key)
		}
	}
	return ""
}

var timeType = reflect.TypeFor[time.Time]()

func numericKind(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Float64
}

// jsonShapeProblems walks t as encoding/json does and lists what breaks the JSON
// conventions: an exported field without an explicit snake_case json tag (keyProblem),
// a time.Duration (nanoseconds), a map keyed by anything but strings, a []byte
// (base64), an interface whose shape nobody can check, a time not omitted when zero
// (0001-01-01T00:00:00Z), a pointer not omitted when nil (null), and a list or map
// omitted when empty (it is [] or {}: a reader need not tell absent from empty).
func jsonShapeProblems(t reflect.Type) []string {
	var problems []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		if t == timeType || wireTypes[t] != "" {
			return
		}
		if t == reflect.TypeFor[time.Duration]() {
			problems = append(problems, path+": time.Duration prints nanoseconds; print milliseconds (a float64 whose key ends in _ms)")
			return
		}
		switch t.Kind() {
		case reflect.Pointer:
			walk(t.Elem(), path)
		case reflect.Slice, reflect.Array:
			if t.Elem().Kind() == reflect.Uint8 {
				problems = append(problems, path+": []byte prints base64; print a string")
				return
			}
			walk(t.Elem(), path+"[]")
		case reflect.Map:
			if t.Key().Kind() != reflect.String {
				problems = append(problems, fmt.Sprintf("%s: map keyed by %s prints its keys as strings of numbers; key it by a string (a name, a reason) or print a list", path, t.Key()))
			}
			walk(t.Elem(), path+"{}")
		case reflect.Interface:
			problems = append(problems, path+": "+t.String()+" can hold anything; print a concrete type")
		case reflect.Struct:
			if seen[t] {
				return
			}
			seen[t] = true
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				tag, hasTag := f.Tag.Lookup("json")
				name, opts, _ := strings.Cut(tag, ",")
				if name == "-" && opts == "" {
					continue
				}
				if f.Anonymous && name == "" {
					walk(f.Type, path) // embedded: its fields are this struct's
					continue
				}
				if !f.IsExported() {
					continue
				}
				fp := path + "." + f.Name
				if !hasTag || name == "" {
					problems = append(problems, fp+": no json tag (want an explicit snake_case key)")
				} else if p := keyProblem(name, numericKind(f.Type.Kind())); p != "" {
					problems = append(problems, fp+": "+p)
				}
				omitempty := strings.Contains(","+opts+",", ",omitempty,")
				omitzero := strings.Contains(","+opts+",", ",omitzero,")
				if f.Type.Kind() == reflect.Pointer && !omitempty && !omitzero {
					problems = append(problems, fp+": a nil pointer prints null; tag it omitempty")
				}
				if k := f.Type.Kind(); (k == reflect.Slice || k == reflect.Map) && (omitempty || omitzero) {
					problems = append(problems, fp+": a list or map is always there, [] or {} when empty; drop omitempty")
				}
				if f.Type == timeType && !omitzero {
					problems = append(problems, fp+": a zero time prints 0001-01-01T00:00:00Z; tag it omitzero")
				}
				walk(f.Type, fp)
			}
		}
	}
	walk(t, t.String())
	return problems
}

// Every type printed with --output json has explicit snake_case keys, all the way down.
func TestJSONShapes(t *testing.T) {
	for _, o := range jsonOutputs {
		for _, p := range jsonShapeProblems(o.t) {
			t.Errorf("%s: %s", o.cmd, p)
		}
	}
}

// filled returns a value of t with every field set, every list holding one element
// and every map one entry, so that printing it shows every key (MarshalJSON methods
// included).
func filled(t reflect.Type, depth int) reflect.Value {
	v := reflect.New(t).Elem()
	if depth > 8 {
		return v
	}
	if t == timeType {
		return reflect.ValueOf(time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC))
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.String:
		v.SetString("x")
	case reflect.Pointer:
		v.Set(filled(t.Elem(), depth+1).Addr())
	case reflect.Slice:
		v.Set(reflect.Append(v, filled(t.Elem(), depth+1)))
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			v.Index(i).Set(filled(t.Elem(), depth+1))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(t))
		k := filled(t.Key(), depth+1)
		if t.Key().Kind() == reflect.String {
			k.SetString("k")
		}
		v.SetMapIndex(k, filled(t.Elem(), depth+1))
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := v.Field(i); f.CanSet() {
				f.Set(filled(t.Field(i).Type, depth+1))
			}
		}
	}
	return v
}

// jsonKeyProblems lists the keys of decoded JSON that break keyProblem, and nulls.
func jsonKeyProblems(v any, path string) []string {
	var problems []string
	switch x := v.(type) {
	case nil:
		problems = append(problems, path+": null (print [] for an empty list, omit an absent value)")
	case map[string]any:
		for k, e := range x {
			_, numeric := e.(float64)
			if p := keyProblem(k, numeric); p != "" {
				problems = append(problems, path+": "+p)
			}
			problems = append(problems, jsonKeyProblems(e, path+"."+k)...)
		}
	case []any:
		for _, e := range x {
			problems = append(problems, jsonKeyProblems(e, path+"[]")...)
		}
	}
	return problems
}

// What printJSON prints of each type, empty and filled, has snake_case keys and no
// null: this sees what MarshalJSON methods make, which the walk of the fields cannot.
func TestJSONOutputs(t *testing.T) {
	for _, o := range jsonOutputs {
		for name, v := range map[string]reflect.Value{"zero": reflect.Zero(o.t), "filled": filled(o.t, 0)} {
			var b bytes.Buffer
			if err := printJSON(&b, v.Interface()); err != nil {
				t.Errorf("%s, %s %s: %v", o.cmd, name, o.t, err)
				continue
			}
			var decoded any
			if err := json.Unmarshal(b.Bytes(), &decoded); err != nil {
				t.Fatalf("%s: %v\n%s", o.cmd, err, b.Bytes())
			}
			for _, p := range jsonKeyProblems(decoded, name+" "+o.t.String()) {
				t.Errorf("%s: %s", o.cmd, p)
			}
		}
	}
}

// The walk and the key check find what they must, and only that.
func TestJSONShapeProblems(t *testing.T) {
	type inner struct {
		OK  int `json:"ok"`
		Bad int
	}
	type bad struct {
		NoTag    string
		Camel    string          `json:"camelCase"`
		Nanos    time.Duration   `json:"took_ms"`
		Secs     float64         `json:"took_seconds"`
		PerSec   float64         `json:"rows_per_sec"`
		Hours    float64         `json:"window_hours"`
		ByID     map[uint32]int  `json:"by_id"`
		Blob     []byte          `json:"blob"`
		Any      any             `json:"any"`
		Nested   []inner         `json:"nested"`
		Ptr      *inner          `json:"ptr"`
		At       time.Time       `json:"at"`
		Skipped  string          `json:"-"`
		Fine     map[string]bool `json:"fine"`
		Optional *inner          `json:"optional,omitempty"`
		When     time.Time       `json:"when,omitzero"`
		Rate     float64         `json:"rows_per_second"`
		CPURate  float64         `json:"decisions_per_cpu_second"`
		Quiet    string          `json:"quiet_hours"`
		Wire     events.ConsentRecord
		Omitted  []string `json:"omitted,omitempty"`
	}
	got := strings.Join(jsonShapeProblems(reflect.TypeFor[bad]()), "\n")
	for _, want := range []string{".NoTag: no json tag", `.Camel: key "camelCase"`, ".Nanos: time.Duration", `.Secs: key "took_seconds"`,
		`.PerSec: key "rows_per_sec"`, `.Hours: key "window_hours"`, ".ByID: map keyed by uint32", ".Blob: []byte", ".Any: interface {}",
		".Nested[].Bad: no json tag", ".Ptr: a nil pointer", ".At: a zero time", ".Wire: no json tag", ".Omitted: a list or map is always there"} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem %q in\n%s", want, got)
		}
	}
	for _, clean := range []string{"Skipped", "Fine", "Optional", "When", "Nested[].OK", "Rate", "CPURate", "Quiet", "Wire.Time"} {
		if strings.Contains(got, "."+clean+":") {
			t.Errorf("%s reported:\n%s", clean, got)
		}
	}
	var decoded any
	_ = json.Unmarshal([]byte(`{"ok":[{"fineKey":1,"eta_ns":2,"list":null}]}`), &decoded)
	got = strings.Join(jsonKeyProblems(decoded, "v"), "\n")
	for _, want := range []string{`v.ok[]: key "fineKey"`, `v.ok[]: key "eta_ns"`, "v.ok[].list: null"} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem %q in\n%s", want, got)
		}
	}
}
