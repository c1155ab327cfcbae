package graph

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// decodeStatuses decodes what encoding/json decodes, or declines.
func FuzzDecodeStatuses(f *testing.F) {
	addFixtureSeeds(f)
	for _, s := range fastSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := decodeStatuses(body)
		if !ok {
			return
		}
		var want Notification
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("decodeStatuses accepted what encoding/json refuses (%v): %q", err, body)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeStatuses\n%+v\nencoding/json\n%+v\nof %q", got, want, body)
		}
	})
}

var fastSamples = []string{
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.A","status":"delivered","timestamp":"1750030071","recipient_id":"66812345678","biz_opaque_callback_data":"7:42:B","conversation":{"id":"c1","origin":{"type":"marketing"}},"pricing":{"billable":false,"pricing_model":"PMP","category":"marketing"}}]}}]}]}`,
	` { "object" : "whatsapp_business_account" , "entry" : [ { "changes" : [ { "value" : { "statuses" : [ { "id" : "w" , "status" : "read" , "recipient_id" : "1" , "extra" : [ 1 , -2.5e+3 , true , false , null , { "a" : [ ] } , "ไทย" ] } ] } } ] } ] } `,
	`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w","status":"failed","recipient_id":"1","errors":[{"code":-131026,"title":"t","error_data":{"details":"d"}}]}]}}]}]}`,
}

// Bodies that decodeStatuses leaves to encoding/json.
func TestDecodeStatusesDeclines(t *testing.T) {
	for _, s := range []string{
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w\u0041","status":"read","recipient_id":"1"}]}}]}]}`,    // escape
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"ID":"w","status":"read","recipient_id":"1"}]}}]}]}`,          // case-folded key
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w","id":"x","status":"read","recipient_id":"1"}]}}]}]}`, // duplicate
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w","status":"read","recipient_id":"1","pricing":null}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"w","status":"failed","recipient_id":"1","errors":[{"code":1.0}]}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"from":"1","id":"m","timestamp":"1","type":"text","text":{"body":"hi"}}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[]}}]}]}`,
	} {
		if _, ok := decodeStatuses([]byte(s)); ok {
			t.Errorf("decodeStatuses took %s", s)
		}
	}
	for _, s := range []string{`{"object":"x","entry":[{}]}x`, `{"object":"x","entry":[{}],}`, `{"object":"x","entry":[{"id":"\x01"}]}`, `{"entry":[{"id":"a"}],"o":01}`, `{"entry":[{"id":"\xff"}]}`} {
		if _, ok := decodeStatuses([]byte(s)); ok {
			t.Errorf("decodeStatuses took invalid %q", s)
		}
	}
}

// Real status batches take the fast path.
func TestDecodeStatusesTakesStatusBatches(t *testing.T) {
	b, err := os.ReadFile("testdata/statuses.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range append([]string{string(b)}, fastSamples...) {
		got, ok := decodeStatuses([]byte(body))
		if !ok {
			t.Fatalf("declined %s", body)
		}
		var want Notification
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	}
}

func BenchmarkParseNotification(b *testing.B) {
	body, err := os.ReadFile("testdata/statuses.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var n Notification
			if err := json.Unmarshal(body, &n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, ok := decodeStatuses(body); !ok {
				b.Fatal("declined")
			}
		}
	})
}
